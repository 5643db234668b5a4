package importer_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/importer"
)

// replaceOnce replaces the first old in data, failing when there is none.
func replaceOnce(t *testing.T, data []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%q not in the file", old)
	}
	return bytes.Replace(data, []byte(old), []byte(new), 1)
}

// TestImportRefusesInvalidFile imports, into a database holding nothing of
// the test's ids, the example file with one thing wrong. Each must be
// refused with the place named, and nothing written at all.
func TestImportRefusesInvalidFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// edit changes the (suffixed) example file; raw, when set, then
		// changes its encoding.
		edit      func(f *importer.File)
		raw       func(t *testing.T, data []byte) []byte
		wantPaths []string
		wantText  string // in the error message
	}{
		{
			name:      "unknown product on a subscription",
			edit:      func(f *importer.File) { f.Customers[0].Subscriptions[1].ProductCode = "NO-SUCH-PRODUCT" },
			wantPaths: []string{"customers[0].subscriptions[1].product_code"},
			wantText:  `unknown product "NO-SUCH-PRODUCT"`,
		},
		{
			name:      "a customer with no subscription and no currency",
			edit:      func(f *importer.File) { f.Customers[1].Subscriptions = nil },
			wantPaths: []string{"customers[1].currency"},
			wantText:  "needs its currency",
		},
		{
			name:      "a customer whose currency is not its products'",
			edit:      func(f *importer.File) { f.Customers[0].Currency = "EUR" },
			wantPaths: []string{"customers[0].subscriptions[0].product_code", "customers[0].subscriptions[1].product_code"},
			wantText:  "the customer pays in EUR",
		},
		{
			name:      "duplicate customer id",
			edit:      func(f *importer.File) { f.Customers = append(f.Customers, f.Customers[1]) },
			wantPaths: []string{"customers[4].id"},
			wantText:  "also at customers[1]",
		},
		{
			name: "duplicate MSP id",
			edit: func(f *importer.File) {
				f.MSPs = append(f.MSPs, importer.MSP{ID: f.MSPs[0].ID, Name: "Northwind again"})
			},
			wantPaths: []string{"msps[2].id"},
			wantText:  "also at msps[0]",
		},
		{
			name:      "duplicate user id",
			edit:      func(f *importer.File) { f.MSPs[0].Users[1].ID = f.MSPs[0].Users[0].ID },
			wantPaths: []string{"msps[0].users[1].id"},
			wantText:  `duplicate user id "u-alex"`,
		},
		{
			name:      "duplicate API key",
			edit:      func(f *importer.File) { f.MSPs[1].Users[0].APIKey = f.MSPs[0].Users[0].APIKey },
			wantPaths: []string{"msps[1].users[0].api_key"},
			wantText:  "msps[0].users[0]",
		},
		{
			name:      "API key too short",
			edit:      func(f *importer.File) { f.MSPs[1].Users[0].APIKey = "short" },
			wantPaths: []string{"msps[1].users[0].api_key"},
			wantText:  "at least 10 characters",
		},
		{
			name:      "duplicate product code",
			edit:      func(f *importer.File) { f.Products[3].Code = f.Products[1].Code },
			wantPaths: []string{"products[3].code"},
			wantText:  "also at products[1]",
		},
		{
			name:      "negative seat count",
			edit:      func(f *importer.File) { f.Customers[2].Subscriptions[0].Seats = -5 },
			wantPaths: []string{"customers[2].subscriptions[0].seats"},
			wantText:  "got -5",
		},
		{
			name:      "zero seats",
			edit:      func(f *importer.File) { f.Customers[3].Subscriptions[0].Seats = 0 },
			wantPaths: []string{"customers[3].subscriptions[0].seats"},
			wantText:  "got 0",
		},
		{
			name: "malformed JSON",
			raw: func(t *testing.T, data []byte) []byte {
				return replaceOnce(t, data, `"seats": 682,`, `"seats": 682`) // a comma missing
			},
			wantPaths: []string{""},
			wantText:  "malformed JSON",
		},
		{
			name: "seats as a string",
			raw: func(t *testing.T, data []byte) []byte {
				return replaceOnce(t, data, `"seats": 682,`, `"seats": "682",`)
			},
			wantPaths: []string{"customers[0].subscriptions[0].seats"},
			wantText:  "expected int, found a JSON string",
		},
		{
			name: "unknown field",
			raw: func(t *testing.T, data []byte) []byte {
				return replaceOnce(t, data, `"per_user": true,`, `"per_user": true, "colour": "red",`)
			},
			wantPaths: []string{"products[0].colour"},
			wantText:  `unknown field "colour"`,
		},
		{
			name: "trailing garbage after the object",
			raw: func(t *testing.T, data []byte) []byte {
				return append(data, "\n{\"msps\": []}\n"...)
			},
			wantPaths: []string{""},
			wantText:  "unexpected data after the top-level object",
		},
		{
			name:      "unknown MSP on a customer",
			edit:      func(f *importer.File) { f.Customers[3].MSPID = "msp-nowhere" },
			wantPaths: []string{"customers[3].msp_id"},
			wantText:  `unknown MSP "msp-nowhere"`,
		},
		{
			name:      "term type the product does not offer",
			edit:      func(f *importer.File) { f.Customers[0].Subscriptions[1].TermType = "Monthly" },
			wantPaths: []string{"customers[0].subscriptions[1].term_type"},
			wantText:  `not offered on the term "Monthly"`,
		},
		{
			name:      "bad unit price on a subscription",
			edit:      func(f *importer.File) { f.Customers[1].Subscriptions[0].UnitPrice = "abc" },
			wantPaths: []string{"customers[1].subscriptions[0].unit_price"},
			wantText:  `"abc"`,
		},
		{
			name:      "negative unit price on a subscription",
			edit:      func(f *importer.File) { f.Customers[1].Subscriptions[0].UnitPrice = "-3.90" },
			wantPaths: []string{"customers[1].subscriptions[0].unit_price"},
			wantText:  "must not be negative",
		},
		{
			name:      "bad unit price on a tier",
			edit:      func(f *importer.File) { f.Products[2].Tiers[1].UnitPrice = "abc" },
			wantPaths: []string{"products[2].tiers[1].unit_price"},
			wantText:  `"abc"`,
		},
		{
			name:      "tier from 0 seats",
			edit:      func(f *importer.File) { f.Products[2].Tiers[1].MinSeats = 0 },
			wantPaths: []string{"products[2].tiers[1].min_seats"},
			wantText:  "got 0",
		},
		{
			name:      "tier on a term the product does not offer",
			edit:      func(f *importer.File) { f.Products[3].Tiers[0].TermType = "Monthly" },
			wantPaths: []string{"products[3].tiers[0].term_type"},
			wantText:  `"Monthly"`,
		},
		{
			name:      "no tier from 1 seat",
			edit:      func(f *importer.File) { f.Products[2].Tiers = f.Products[2].Tiers[1:] },
			wantPaths: []string{"products[2].tiers"},
			wantText:  "no tier from 1 seat",
		},
		{
			name:      "unknown currency",
			edit:      func(f *importer.File) { f.Products[3].Currency = "XYZ" },
			wantPaths: []string{"products[3].currency"},
			wantText:  `unknown currency "XYZ"`,
		},
		{
			name: "customer with products in two currencies",
			edit: func(f *importer.File) {
				f.Products[1].Currency = "EUR"
				f.Customers[0].Subscriptions[1].UnitPrice = "1.65" // ARCHIVE, now in EUR
			},
			wantPaths: []string{"customers[0].subscriptions[1].product_code"},
			wantText:  "priced in EUR",
		},
		{
			// Everything valid and new (MSPs, users, products, customers)
			// except one customer at the very end: not even the MSPs and
			// products may be written.
			name: "one bad customer at the end of a valid file",
			edit: func(f *importer.File) {
				bad := f.Customers[3]
				bad.ID = strings.Replace(bad.ID, "fabrikam", "wingtip", 1)
				bad.Name = "Wingtip Toys"
				bad.Subscriptions = []importer.Subscription{bad.Subscriptions[0]}
				bad.Subscriptions[0].Seats = 0
				f.Customers = append(f.Customers, bad)
			},
			wantPaths: []string{"customers[4].subscriptions[0].seats"},
			wantText:  "seats must be between 1 and",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, pool, ctx := setup(t)
			sfx := newSuffix()
			f := suffixed(t, sfx)
			if tt.edit != nil {
				tt.edit(f)
			}
			data := encode(t, f)
			if tt.raw != nil {
				data = tt.raw(t, data)
			}
			before := take(t, pool, sfx)
			if !before.empty() {
				t.Fatalf("rows of suffix %s before the import: %+v", sfx, before)
			}

			_, err := importBytes(ctx, store, data, clockA)
			inv := invalidFile(t, err)
			wantPaths(t, inv, tt.wantPaths...)
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error does not say %q:\n%v", tt.wantText, err)
			}
			if !strings.Contains(err.Error(), "nothing was imported") {
				t.Errorf("error does not say nothing was imported:\n%v", err)
			}
			wantSameSnapshot(t, take(t, pool, sfx), before)
		})
	}
}

// TestImportRefusedFileLeavesEarlierImportAlone imports a file, then a
// second one that renames an MSP, rotates a key, reprices a product, adds an
// MSP with a user, a product and a valid customer, and ends with one invalid
// customer. The second is refused and not one row changes, not even its
// xmin.
func TestImportRefusedFileLeavesEarlierImportAlone(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	importOrFatal(t, store, f, clockA)
	before := take(t, pool, sfx)

	f.MSPs[0].Name = "Northwind MS"
	f.MSPs[0].Users[1].APIKey = "rotated-" + sfx
	f.Products[0].Tiers[0].UnitPrice = "4.10"
	f.MSPs = append(f.MSPs, importer.MSP{ID: "msp-new-" + sfx, Name: "New MSP", Users: []importer.User{
		{ID: "u-new", Name: "New User", APIKey: "new-user-key-" + sfx},
	}})
	f.Products = append(f.Products, importer.Product{
		Code: "NEW-" + sfx, Name: "New product", PerUser: true, Currency: "USD", TermTypes: []string{"12 Month"},
		Tiers: []importer.Tier{{TermType: "12 Month", MinSeats: 1, UnitPrice: "2.00"}},
	})
	f.Customers = append(f.Customers,
		importer.Customer{ID: "cust-new-" + sfx, MSPID: "msp-new-" + sfx, Name: "New Customer", Subscriptions: []importer.Subscription{
			{ProductCode: "NEW-" + sfx, TermType: "12 Month", Seats: 10, UnitPrice: "2.00"},
		}},
		importer.Customer{ID: "cust-bad-" + sfx, MSPID: "msp-new-" + sfx, Name: "Bad Customer", Subscriptions: []importer.Subscription{
			{ProductCode: "NEW-" + sfx, TermType: "12 Month", Seats: -1, UnitPrice: "2.00"},
		}},
	)
	_, err := importBytes(ctx, store, encode(t, f), clockB)
	wantPaths(t, invalidFile(t, err), "customers[5].subscriptions[0].seats")
	wantSameSnapshot(t, take(t, pool, sfx), before)
}

// TestImportRefusesChangedOnboarding: onboarding is a recorded fact; a file
// that says otherwise about an onboarded customer is refused whole.
func TestImportRefusesChangedOnboarding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(f *importer.File)
		path string
	}{
		{"other name", func(f *importer.File) { f.Customers[2].Name = "1st Street Dentistry" }, "customers[2]"},
		{"other seat count", func(f *importer.File) { f.Customers[0].Subscriptions[1].Seats = 700 }, "customers[0]"},
		{"other unit price", func(f *importer.File) { f.Customers[3].Subscriptions[0].UnitPrice = "3.20" }, "customers[3]"},
		{"other MSP", func(f *importer.File) { f.Customers[1].MSPID = f.MSPs[1].ID }, "customers[1]"},
		{"a line fewer", func(f *importer.File) { f.Customers[0].Subscriptions = f.Customers[0].Subscriptions[:1] }, "customers[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, pool, ctx := setup(t)
			sfx := newSuffix()
			f := suffixed(t, sfx)
			importOrFatal(t, store, f, clockA)
			before := take(t, pool, sfx)

			// The rest of the file changes and adds things; none of it may
			// be written.
			f.MSPs[1].Name = "Tailspin renamed"
			f.Products[1].Tiers[0].UnitPrice = "1.99"
			f.Customers = append(f.Customers, importer.Customer{
				ID: "cust-later-" + sfx, MSPID: f.MSPs[0].ID, Name: "Later Ltd", Subscriptions: []importer.Subscription{
					{ProductCode: f.Products[3].Code, TermType: "12 Month", Seats: 3, UnitPrice: "45.00"},
				}})
			tt.edit(f)
			_, err := importBytes(ctx, store, encode(t, f), clockB)
			inv := invalidFile(t, err)
			wantPaths(t, inv, tt.path)
			if !strings.Contains(err.Error(), "onboarded with other data") {
				t.Errorf("error does not say the customer was onboarded with other data:\n%v", err)
			}
			wantSameSnapshot(t, take(t, pool, sfx), before)
		})
	}
}

func TestInvalidFileErrorListsEveryProblem(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	f.MSPs[1].Name = " "
	f.Products[3].Currency = "XYZ"
	f.Customers[2].Subscriptions[0].Seats = -1
	_, err := importBytes(ctx, store, encode(t, f), clockA)
	inv := invalidFile(t, err)
	wantPaths(t, inv, "msps[1].name", "products[3].currency", "customers[2].subscriptions[0].seats")
	if !strings.Contains(err.Error(), "3 problem(s)") {
		t.Errorf("error does not count 3 problems:\n%v", err)
	}
	if !take(t, pool, sfx).empty() {
		t.Error("a refused file wrote rows")
	}
}

// TestImportRefusesAPIKeyOfAnotherUser: the API key of a user already in the
// database (of another MSP) cannot be given to a user of another file.
func TestImportRefusesAPIKeyOfAnotherUser(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfxA, sfxB := newSuffix(), newSuffix()
	a := suffixed(t, sfxA)
	importOrFatal(t, store, a, clockA)
	b := suffixed(t, sfxB)
	b.MSPs[1].Users[0].APIKey = a.MSPs[0].Users[1].APIKey
	_, err := importBytes(ctx, store, encode(t, b), clockA)
	if err == nil {
		t.Fatal("a file reusing another user's API key was accepted")
	}
	if !strings.Contains(err.Error(), `"u-kim"`) || !strings.Contains(err.Error(), b.MSPs[1].ID) {
		t.Errorf("error does not name the user and MSP: %v", err)
	}
	if !take(t, pool, sfxB).empty() {
		t.Error("the refused file wrote rows")
	}
}

// TestInvalidFileErrorReportsDuplicateOfInvalidProduct: a product that is
// itself invalid and given twice is two problems; fixing the first must not
// reveal the second only on the next run.
func TestInvalidFileErrorReportsDuplicateOfInvalidProduct(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	f.Products[2].Tiers[1].MinSeats = 0     // AWARENESS: invalid
	f.Products[3].Code = f.Products[2].Code // and given again
	_, err := importBytes(ctx, store, encode(t, f), clockA)
	wantPaths(t, invalidFile(t, err), "products[2].tiers[1].min_seats", "products[3].code")
	if !take(t, pool, sfx).empty() {
		t.Error("a refused file wrote rows")
	}
}

// A product's currency cannot change once imported: subscriptions and open
// quotes are priced in it. A customer with no subscription may be imported
// with its currency given.
func TestImportProductCurrencyIsFixedAndCustomersMayStartEmpty(t *testing.T) {
	t.Parallel()
	store, pool, ctx := setup(t)
	sfx := newSuffix()
	f := suffixed(t, sfx)
	f.Customers[1].Subscriptions = nil
	f.Customers[1].Currency = "USD"
	rep := importOrFatal(t, store, f, clockA)
	if rep.Customers.Created != 4 {
		t.Fatalf("customers: %s, want 4 created", rep.Customers)
	}
	before := take(t, pool, sfx)
	g := suffixed(t, sfx)
	g.Customers = nil
	g.Products[0].Currency = "EUR"
	_, err := importBytes(ctx, store, encode(t, g), clockA)
	wantPaths(t, invalidFile(t, err), "products[0].currency")
	if after := take(t, pool, sfx); !reflect.DeepEqual(before, after) {
		t.Fatal("the refused file changed rows")
	}
}
