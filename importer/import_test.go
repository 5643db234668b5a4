package importer_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
)

// TestImportExampleFile is the only test that imports the fixture as it is,
// with its fixed ids.
func TestImportExampleFile(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	// The database lives as long as the test binary: with -count=N this
	// test meets its own rows of the previous run. Remove them (and only
	// them) so that every run is a first import.
	if _, err := pool.Exec(ctx, `
		WITH e AS (DELETE FROM events WHERE stream_id IN ('cust-contoso', 'cust-adatum', 'cust-1st-street', 'cust-fabrikam')),
			u AS (DELETE FROM msp_users WHERE msp_id IN ('msp-northwind', 'msp-tailspin')),
			p AS (DELETE FROM products WHERE code IN ('EMAIL-SEC', 'ARCHIVE', 'AWARENESS', 'DMARC'))
		SELECT 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM msps WHERE id IN ('msp-northwind', 'msp-tailspin')`); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := importBytes(ctx, store, data, clockA)
	if err != nil {
		t.Fatalf("import %s: %v", examplePath, err)
	}
	wantCounts(t, "MSPs", rep.MSPs, importer.Counts{Created: 2})
	wantCounts(t, "users", rep.Users, importer.Counts{Created: 3})
	wantCounts(t, "products", rep.Products, importer.Counts{Created: 4})
	wantCounts(t, "customers", rep.Customers, importer.Counts{Created: 4})
	if rep.Unchanged() {
		t.Error("Report.Unchanged() is true after a first import")
	}

	t.Run("msps", func(t *testing.T) {
		rows, err := pool.Query(ctx, `SELECT id, name FROM msps WHERE id IN ('msp-northwind', 'msp-tailspin') ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row [2]string, err error) {
			return row, r.Scan(&row[0], &row[1])
		})
		if err != nil {
			t.Fatal(err)
		}
		want := [][2]string{{"msp-northwind", "Northwind Managed Services"}, {"msp-tailspin", "Tailspin IT Partners"}}
		if !slices.Equal(got, want) {
			t.Errorf("msps = %q, want %q", got, want)
		}
	})

	keys := map[string]string{ // user id -> API key, from the fixture
		"u-alex": "nw-alex-5f2c9e1d7a",
		"u-sam":  "nw-sam-88b1c0e4f3",
		"u-kim":  "ts-kim-3a9d0b6c21",
	}
	t.Run("users", func(t *testing.T) {
		type user struct {
			MSPID, ID, Name string
			Hash            []byte
		}
		rows, err := pool.Query(ctx, `SELECT msp_id, id, name, api_key_hash FROM msp_users
			WHERE msp_id IN ('msp-northwind', 'msp-tailspin') ORDER BY msp_id, id`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (user, error) {
			var u user
			return u, r.Scan(&u.MSPID, &u.ID, &u.Name, &u.Hash)
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []user{
			{"msp-northwind", "u-alex", "Alex Rivera", nil},
			{"msp-northwind", "u-sam", "Sam Okafor", nil},
			{"msp-tailspin", "u-kim", "Kim Laurent", nil},
		}
		if len(got) != len(want) {
			t.Fatalf("%d users, want %d: %+v", len(got), len(want), got)
		}
		for i, w := range want {
			g := got[i]
			sum := sha256.Sum256([]byte(keys[w.ID]))
			if g.MSPID != w.MSPID || g.ID != w.ID || g.Name != w.Name {
				t.Errorf("user %d = %s/%s %q, want %s/%s %q", i, g.MSPID, g.ID, g.Name, w.MSPID, w.ID, w.Name)
			}
			if !bytes.Equal(g.Hash, sum[:]) {
				t.Errorf("user %s: api_key_hash %x, want sha256 of its key %x", g.ID, g.Hash, sum)
			}
			// The database agrees, so a lookup by sha256(key) in SQL finds it.
			var found bool
			if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM msp_users
				WHERE msp_id = $1 AND id = $2 AND api_key_hash = sha256(convert_to($3, 'UTF8')))`,
				g.MSPID, g.ID, keys[w.ID]).Scan(&found); err != nil {
				t.Fatal(err)
			}
			if !found {
				t.Errorf("user %s: api_key_hash is not sha256(key) as PostgreSQL computes it", g.ID)
			}
		}
	})

	t.Run("no plain API key stored", func(t *testing.T) {
		// Every column of msp_users, whatever its type, and every text-like
		// column of every other table.
		rows, err := pool.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
			WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row [3]string, err error) {
			return row, r.Scan(&row[0], &row[1], &row[2])
		})
		if err != nil {
			t.Fatal(err)
		}
		searched := 0
		for _, c := range cols {
			table, column, typ := c[0], c[1], c[2]
			var cond string
			switch {
			case typ == "bytea":
				cond = fmt.Sprintf("position(convert_to($1, 'UTF8') in %s) > 0", pgx.Identifier{column}.Sanitize())
			case table == "msp_users", typ == "text", typ == "character varying", typ == "character",
				typ == "json", typ == "jsonb", typ == "ARRAY":
				cond = fmt.Sprintf("position($1 in %s::text) > 0", pgx.Identifier{column}.Sanitize())
			default:
				continue
			}
			if table == "msp_users" {
				searched++
			}
			for _, key := range keys {
				var n int
				q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", pgx.Identifier{table}.Sanitize(), cond)
				if err := pool.QueryRow(ctx, q, key).Scan(&n); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				if n > 0 {
					t.Errorf("the API key %q is stored in plain in %s.%s (%d rows)", key, table, column, n)
				}
			}
		}
		if searched < 4 {
			t.Errorf("searched %d columns of msp_users, want all 4", searched)
		}
		// A control: the same search does find what is stored in plain.
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM msp_users WHERE position($1 in name::text) > 0`, "Alex Rivera").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Error("the search does not find a user's name: it cannot find a key either")
		}
	})

	t.Run("products", func(t *testing.T) {
		type tier struct {
			TermType  string `json:"term_type"`
			MinSeats  int    `json:"min_seats"`
			UnitPrice string `json:"unit_price"`
		}
		type product struct {
			Code, Name, Currency string
			PerUser              bool
			TermTypes            []string
			Tiers                []tier
		}
		rows, err := pool.Query(ctx, `SELECT code, name, per_user, currency, term_types, tiers FROM products
			WHERE code IN ('EMAIL-SEC', 'ARCHIVE', 'AWARENESS', 'DMARC')`)
		if err != nil {
			t.Fatal(err)
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (product, error) {
			var p product
			var tiers []byte
			if err := r.Scan(&p.Code, &p.Name, &p.PerUser, &p.Currency, &p.TermTypes, &tiers); err != nil {
				return p, err
			}
			// unit_price must be a JSON string ("45.00"), not a number.
			dec := json.NewDecoder(bytes.NewReader(tiers))
			dec.DisallowUnknownFields()
			return p, dec.Decode(&p.Tiers)
		})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]product{}
		for _, p := range list {
			got[p.Code] = p
		}
		want := []product{
			{"EMAIL-SEC", "Email Security Cloud Gateway", "USD", true, []string{"Monthly", "12 Month", "36 Month"}, []tier{
				{"Monthly", 1, "3.90"}, {"Monthly", 500, "3.60"},
				{"12 Month", 1, "3.50"}, {"12 Month", 500, "3.25"}, {"12 Month", 700, "3.20"},
				{"36 Month", 1, "3.15"}, {"36 Month", 500, "2.95"},
			}},
			{"ARCHIVE", "Cloud Archive", "USD", true, []string{"12 Month", "36 Month"}, []tier{
				{"12 Month", 1, "1.80"}, {"12 Month", 250, "1.65"}, {"36 Month", 1, "1.55"},
			}},
			{"AWARENESS", "Security Awareness Training", "USD", true, []string{"12 Month"}, []tier{
				{"12 Month", 1, "1.25"}, {"12 Month", 1000, "0.99"},
			}},
			{"DMARC", "DMARC Analyzer (per domain)", "USD", false, []string{"12 Month"}, []tier{
				{"12 Month", 1, "45.00"},
			}},
		}
		if len(got) != len(want) {
			t.Errorf("%d products, want %d", len(got), len(want))
		}
		for _, w := range want {
			g, ok := got[w.Code]
			if !ok {
				t.Errorf("product %s missing", w.Code)
				continue
			}
			if g.Name != w.Name || g.Currency != w.Currency || g.PerUser != w.PerUser ||
				!slices.Equal(g.TermTypes, w.TermTypes) || !slices.Equal(g.Tiers, w.Tiers) {
				t.Errorf("product %s =\n %+v\nwant\n %+v", w.Code, g, w)
			}
		}
	})

	t.Run("customers", func(t *testing.T) {
		line := func(code, name, term string, seats int, price string) domain.Line {
			return domain.Line{ProductCode: code, ProductName: name, TermType: term, PerUser: true, Seats: seats, UnitPrice: domain.MustMoney(price)}
		}
		want := map[string]domain.CustomerOnboarded{
			"cust-contoso": {CustomerID: "cust-contoso", MSPID: "msp-northwind", Name: "Contoso Ltd", Currency: "USD", Lines: []domain.Line{
				line("EMAIL-SEC", "Email Security Cloud Gateway", "12 Month", 682, "3.25"),
				line("ARCHIVE", "Cloud Archive", "12 Month", 682, "1.65"),
			}},
			"cust-adatum": {CustomerID: "cust-adatum", MSPID: "msp-northwind", Name: "Adatum Corporation", Currency: "USD", Lines: []domain.Line{
				line("EMAIL-SEC", "Email Security Cloud Gateway", "Monthly", 120, "3.90"),
			}},
			"cust-1st-street": {CustomerID: "cust-1st-street", MSPID: "msp-northwind", Name: "1st Street Dental", Currency: "USD", Lines: []domain.Line{
				line("EMAIL-SEC", "Email Security Cloud Gateway", "36 Month", 25, "3.15"),
			}},
			"cust-fabrikam": {CustomerID: "cust-fabrikam", MSPID: "msp-tailspin", Name: "Fabrikam Inc", Currency: "USD", Lines: []domain.Line{
				line("EMAIL-SEC", "Email Security Cloud Gateway", "12 Month", 300, "3.25"),
			}},
		}
		ids := make([]string, 0, len(want))
		for id := range want {
			ids = append(ids, id)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE stream_id = ANY($1)`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(want) {
			t.Errorf("%d events for the fixture's customers, want one each (%d)", n, len(want))
		}
		for id, w := range want {
			w.OnboardedAt = clockA.T
			events, err := store.Load(ctx, id, eventstore.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 1 {
				t.Errorf("customer %s: %d events, want 1", id, len(events))
				continue
			}
			e := events[0]
			if e.StreamType != domain.StreamCustomer || e.Type != "CustomerOnboarded" || e.Version != 1 || e.SchemaVersion != 1 {
				t.Errorf("customer %s: event %s v%d schema %d on a %q stream, want CustomerOnboarded v1 schema 1 on %q",
					id, e.Type, e.Version, e.SchemaVersion, e.StreamType, domain.StreamCustomer)
			}
			if e.Metadata.MSPID != w.MSPID || e.Metadata.UserID != "import" || e.Metadata.CorrelationID == "" {
				t.Errorf("customer %s: metadata %+v", id, e.Metadata)
			}
			ev, err := domain.DecodeEvent(e.Type, e.SchemaVersion, e.Data)
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(ev)
			wantJSON, _ := json.Marshal(w)
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("customer %s onboarded as\n %s\nwant\n %s", id, gotJSON, wantJSON)
			}
		}
		// The contract with billing: prices travel as JSON strings.
		var prices []string
		if err := pool.QueryRow(ctx, `SELECT array_agg(l->>'product_code' || ' ' || (l->>'seats') || ' ' ||
				jsonb_typeof(l->'unit_price') || ' ' || (l->>'unit_price') ORDER BY o)
			FROM events, jsonb_array_elements(data->'lines') WITH ORDINALITY AS x(l, o)
			WHERE stream_id = 'cust-contoso'`).Scan(&prices); err != nil {
			t.Fatal(err)
		}
		if want := []string{"EMAIL-SEC 682 string 3.25", "ARCHIVE 682 string 1.65"}; !slices.Equal(prices, want) {
			t.Errorf("Contoso's stored lines: %q, want %q", prices, want)
		}
	})
}

// TestImportSameFileTwiceChangesNothing is not parallel: it compares the
// whole events table, which the other tests of the package append to.
func TestImportSameFileTwiceChangesNothing(t *testing.T) {
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	data := encode(t, suffixed(t, sfx))

	first, err := importBytes(ctx, store, data, clockA)
	if err != nil {
		t.Fatal(err)
	}
	if first.Unchanged() {
		t.Fatalf("first import reported unchanged: %+v", first)
	}
	before := take(t, pool, sfx)
	if len(before.MSPs) != 2 || len(before.Users) != 3 || len(before.Products) != 4 || len(before.Events) != 4 {
		t.Fatalf("first import wrote %d MSPs, %d users, %d products, %d events; want 2, 3, 4, 4",
			len(before.MSPs), len(before.Users), len(before.Products), len(before.Events))
	}
	var countBefore, maxBefore int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(max(position), 0) FROM events`).Scan(&countBefore, &maxBefore); err != nil {
		t.Fatal(err)
	}

	// Another clock: when the customers were onboarded is not data the file
	// gives, so a later run must not see a difference.
	second, err := importBytes(ctx, store, data, clockB)
	if err != nil {
		t.Fatalf("second import: %v", err)
	}
	want := importer.Report{
		MSPs: importer.Counts{Unchanged: 2}, Users: importer.Counts{Unchanged: 3},
		Products: importer.Counts{Unchanged: 4}, Customers: importer.Counts{Unchanged: 4},
	}
	if second != want {
		t.Errorf("second report %+v, want %+v", second, want)
	}
	if !second.Unchanged() {
		t.Error("second Report.Unchanged() is false")
	}
	var countAfter, maxAfter int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(max(position), 0) FROM events`).Scan(&countAfter, &maxAfter); err != nil {
		t.Fatal(err)
	}
	if countAfter != countBefore || maxAfter != maxBefore {
		t.Errorf("events: count %d and max(position) %d after the second import, %d and %d before",
			countAfter, maxAfter, countBefore, maxBefore)
	}
	wantSameSnapshot(t, take(t, pool, sfx), before)
}

func TestImportUpdatesProductPrice(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	importOrFatal(t, store, f, clockA)
	before := take(t, pool, sfx)

	// EMAIL-SEC, 12 Month from 500 seats: 3.25 becomes 3.10. Contoso and
	// Fabrikam were onboarded at 3.25: their contracted price stays.
	f.Products[0].Tiers[3].UnitPrice = "3.1"
	rep := importOrFatal(t, store, f, clockB)
	wantCounts(t, "MSPs", rep.MSPs, importer.Counts{Unchanged: 2})
	wantCounts(t, "users", rep.Users, importer.Counts{Unchanged: 3})
	wantCounts(t, "products", rep.Products, importer.Counts{Updated: 1, Unchanged: 3})
	wantCounts(t, "customers", rep.Customers, importer.Counts{Unchanged: 4})

	var tiers []byte
	if err := pool.QueryRow(ctx, `SELECT tiers FROM products WHERE code = $1`, "EMAIL-SEC-"+sfx).Scan(&tiers); err != nil {
		t.Fatal(err)
	}
	var got []domain.Tier
	if err := json.Unmarshal(tiers, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[3].TermType != "12 Month" || got[3].MinSeats != 500 || got[3].UnitPrice.String() != "3.10" {
		t.Errorf("tiers after the update: %s; want 12 Month from 500 at 3.10", tiers)
	}

	after := take(t, pool, sfx)
	if slices.Equal(after.Products, before.Products) {
		t.Error("the products rows did not change")
	}
	changed := 0
	for i := range after.Products {
		if after.Products[i] != before.Products[i] {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("%d product rows changed, want 1", changed)
	}
	before.Products, after.Products = nil, nil
	wantSameSnapshot(t, after, before) // customers, MSPs and users untouched

	contoso, err := store.Load(ctx, "cust-contoso-"+sfx, eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(contoso) != 1 {
		t.Fatalf("Contoso's stream has %d events after the price update, want 1", len(contoso))
	}
	var onboarded domain.CustomerOnboarded
	if err := json.Unmarshal(contoso[0].Data, &onboarded); err != nil {
		t.Fatal(err)
	}
	if len(onboarded.Lines) != 2 || onboarded.Lines[0].UnitPrice.String() != "3.25" {
		t.Errorf("Contoso's onboarding after the price update: %s", contoso[0].Data)
	}
}

func TestImportUpdatesMSPsAndUsers(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	importOrFatal(t, store, f, clockA)

	oldKey := f.MSPs[0].Users[1].APIKey
	f.MSPs[0].Name = "Northwind MS"
	f.MSPs[0].Users[1].APIKey = "rotated-key-" + sfx
	f.MSPs[1].Users = append(f.MSPs[1].Users, importer.User{ID: "u-lee", Name: "Lee Chen", APIKey: "ts-lee-key-" + sfx})
	rep := importOrFatal(t, store, f, clockB)
	wantCounts(t, "MSPs", rep.MSPs, importer.Counts{Updated: 1, Unchanged: 1})
	wantCounts(t, "users", rep.Users, importer.Counts{Created: 1, Updated: 1, Unchanged: 2})
	wantCounts(t, "products", rep.Products, importer.Counts{Unchanged: 4})
	wantCounts(t, "customers", rep.Customers, importer.Counts{Unchanged: 4})

	var name string
	if err := pool.QueryRow(ctx, `SELECT name FROM msps WHERE id = $1`, f.MSPs[0].ID).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "Northwind MS" {
		t.Errorf("MSP name %q after the rename", name)
	}
	for key, want := range map[string]string{oldKey: "", "rotated-key-" + sfx: "u-sam", "ts-lee-key-" + sfx: "u-lee"} {
		sum := sha256.Sum256([]byte(key))
		var got string
		err := pool.QueryRow(ctx, `SELECT id FROM msp_users WHERE api_key_hash = $1`, sum[:]).Scan(&got)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("the key %q belongs to %q, want %q", key, got, want)
		}
	}
}

// TestImportRenamedProductLeavesCustomersAlone: renaming a product in the
// catalog and importing the file again must update the product and leave
// the customers, whose data in the file did not change, alone.
func TestImportRenamedProductLeavesCustomersAlone(t *testing.T) {
	t.Parallel()
	store, pool, _ := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	importOrFatal(t, store, f, clockA)
	before := take(t, pool, sfx)

	f.Products[1].Name = "Cloud Archive Plus" // on Contoso's subscription
	rep, err := importBytes(t.Context(), store, encode(t, f), clockB)
	if err != nil {
		t.Fatalf("import after renaming a product: %v", err)
	}
	wantCounts(t, "products", rep.Products, importer.Counts{Updated: 1, Unchanged: 3})
	wantCounts(t, "customers", rep.Customers, importer.Counts{Unchanged: 4})
	after := take(t, pool, sfx)
	before.Products, after.Products = nil, nil
	wantSameSnapshot(t, after, before)
}

// TestImportSwapsAPIKeys: two users of an MSP exchange their keys. The file
// is valid (every key is given once) and so is the state it leads to.
func TestImportSwapsAPIKeys(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	importOrFatal(t, store, f, clockA)

	alex, sam := &f.MSPs[0].Users[0], &f.MSPs[0].Users[1]
	alex.APIKey, sam.APIKey = sam.APIKey, alex.APIKey
	rep, err := importBytes(ctx, store, encode(t, f), clockB)
	if err != nil {
		t.Fatalf("import swapping two users' keys: %v", err)
	}
	wantCounts(t, "users", rep.Users, importer.Counts{Updated: 2, Unchanged: 1})
	for _, u := range []*importer.User{alex, sam} {
		sum := sha256.Sum256([]byte(u.APIKey))
		var id string
		if err := pool.QueryRow(ctx, `SELECT id FROM msp_users WHERE api_key_hash = $1`, sum[:]).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if id != u.ID {
			t.Errorf("the key %q belongs to %s, want %s", u.APIKey, id, u.ID)
		}
	}
}
