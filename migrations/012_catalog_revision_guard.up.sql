-- A command that priced its decision from the catalog kept in memory, and
-- read nothing first (app: a quote kept in memory), sends this guard with
-- its append: it fails unless the catalog is still at the revision the
-- decision used, and a failure stops the commit (the rest of the pipeline
-- is skipped), so no event is ever priced from a catalog that had changed.
-- The command then reads the catalog again and decides again.
--
-- SQLSTATE UP412; the revision found is the DETAIL.
CREATE FUNCTION upsell_expect_catalog_revision(expected bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current bigint;
BEGIN
    SELECT revision INTO current FROM catalog_revision;
    IF current IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the catalog is at revision %, the decision used revision %', current, expected
            USING ERRCODE = 'UP412', DETAIL = coalesce(current::text, '');
    END IF;
    RETURN true;
END
$$;
