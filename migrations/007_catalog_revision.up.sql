-- The catalog's revision: a number that every change to products moves on,
-- so that the service can keep the validated catalog in memory and check,
-- with one tiny read that travels with the quote's load, that it is still
-- current (app.Service.Catalog). A trigger bumps it, so every writer of
-- products (upsell import, or an operator's SQL) is covered.
CREATE TABLE catalog_revision (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    revision bigint  NOT NULL
);
INSERT INTO catalog_revision (one, revision) VALUES (true, 1);

CREATE FUNCTION upsell_bump_catalog_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_revision SET revision = revision + 1;
    RETURN NULL;
END
$$;

-- Per row, so that an import that changes nothing (its upserts skip equal
-- rows) leaves the revision as it is.
CREATE TRIGGER products_revision AFTER INSERT OR UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION upsell_bump_catalog_revision();
CREATE TRIGGER products_revision_truncate AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION upsell_bump_catalog_revision();
