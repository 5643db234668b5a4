package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/loadgen"
)

func generate(t *testing.T, seed uint64, customers, users int) *loadgen.Data {
	t.Helper()
	d, err := loadgen.Generate(seed, customers, users)
	if err != nil {
		t.Fatalf("Generate(%d, %d, %d): %v", seed, customers, users, err)
	}
	return d
}

func encode(t *testing.T, f *importer.File) []byte {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	a, b := generate(t, 42, 300, 7), generate(t, 42, 300, 7)
	if !bytes.Equal(encode(t, a.File), encode(t, b.File)) || !reflect.DeepEqual(a.Users, b.Users) {
		t.Fatal("the same seed and counts gave two different data sets")
	}
	if other := generate(t, 43, 300, 7); bytes.Equal(encode(t, a.File), encode(t, other.File)) {
		t.Fatal("seeds 42 and 43 gave the same data")
	}

	// Customer i is a function of the seed and i alone: other counts of
	// customers or users give the same customers, so a re-import with
	// other flags changes nothing.
	small := generate(t, 42, 100, 3)
	if !reflect.DeepEqual(small.File.Customers, a.File.Customers[:100]) {
		t.Error("the first 100 customers of 300 (7 users) differ from 100 customers (3 users)")
	}
	if !reflect.DeepEqual(small.File.Products, a.File.Products) {
		t.Error("the catalog depends on the counts")
	}
	if small.Users[0].ID != a.Users[0].ID || small.Users[0].Key != a.Users[0].Key {
		t.Errorf("user 1 differs between 3 and 7 users: %+v, %+v", small.Users[0], a.Users[0])
	}
}

func TestGenerateSplitsCustomersAmongUsers(t *testing.T) {
	t.Parallel()
	d := generate(t, 7, 103, 10)
	if d.MSPID != "lg-7" || len(d.File.MSPs) != 1 || d.File.MSPs[0].ID != "lg-7" {
		t.Fatalf("MSPs %+v (want the one MSP lg-7)", d.File.MSPs)
	}
	if len(d.Users) != 10 || len(d.File.MSPs[0].Users) != 10 {
		t.Fatalf("%d users, %d in the file (want 10)", len(d.Users), len(d.File.MSPs[0].Users))
	}
	owner := map[string]string{}
	keys := map[string]bool{}
	for j, u := range d.Users {
		fu := d.File.MSPs[0].Users[j]
		if fu.ID != u.ID || fu.APIKey != u.Key || len(u.Key) < importer.MinAPIKeyLength || keys[u.Key] {
			t.Errorf("user %d: %+v in the file, %+v in the plan", j, fu, u)
		}
		keys[u.Key] = true
		if n := len(u.Customers); n != 10 && n != 11 {
			t.Errorf("user %s has %d customers (want 10 or 11: an even split of 103)", u.ID, n)
		}
		for _, c := range u.Customers {
			if owner[c] != "" {
				t.Errorf("customer %s belongs to %s and %s", c, owner[c], u.ID)
			}
			owner[c] = u.ID
		}
	}
	if len(owner) != 103 {
		t.Errorf("the users work on %d customers (want all 103)", len(owner))
	}
	for i, c := range d.File.Customers {
		if owner[c.ID] == "" || c.MSPID != "lg-7" || !strings.HasPrefix(c.ID, "lg-7-c") {
			t.Errorf("customers[%d] = %s of %s, user %q", i, c.ID, c.MSPID, owner[c.ID])
		}
		if len(c.Subscriptions) < 1 || len(c.Subscriptions) > 3 {
			t.Errorf("customers[%d] has %d lines (want 1 to 3)", i, len(c.Subscriptions))
		}
		for _, s := range c.Subscriptions {
			if _, ok := d.Catalog[s.ProductCode]; !ok || !strings.HasPrefix(s.ProductCode, "LG-") {
				t.Errorf("customers[%d] has a product outside loadgen's catalog: %s", i, s.ProductCode)
			}
		}
	}
}

func TestGenerateRefusesBadCounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ customers, users int }{{10, 0}, {3, 4}, {loadgen.MaxCustomers + 1, 1}, {20000, loadgen.MaxUsers + 1}} {
		if _, err := loadgen.Generate(1, tc.customers, tc.users); err == nil {
			t.Errorf("Generate(1, %d customers, %d users) was accepted", tc.customers, tc.users)
		}
	}
}

// The generated file passes the importer's strict parser and its checks
// against a real database, and importing it again (even with another count
// of users) changes nothing.
func TestGeneratedDataImports(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t, "loadgen")
	store := eventstore.New(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	seed := rand.Uint64() // the package database lives as long as the test binary
	d := generate(t, seed, 200, 5)
	parsed, err := importer.Parse(bytes.NewReader(encode(t, d.File)))
	if err != nil {
		t.Fatalf("importer.Parse refuses the generated file: %v", err)
	}
	rep, err := importer.Import(ctx, store, parsed, domain.SystemClock{})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if rep.Customers.Created != 200 || rep.Users.Created != 5 || rep.MSPs.Created != 1 {
		t.Errorf("first import: %+v (want 1 MSP, 5 users, 200 customers created)", rep)
	}
	again, err := importer.Import(ctx, store, generate(t, seed, 200, 5).File, domain.SystemClock{})
	if err != nil || !again.Unchanged() {
		t.Errorf("second import: %+v, %v (want nothing changed)", again, err)
	}
	more, err := importer.Import(ctx, store, generate(t, seed, 250, 8).File, domain.SystemClock{})
	if err != nil || more.Customers.Created != 50 || more.Customers.Unchanged != 200 || more.Users.Created != 3 {
		t.Errorf("import with more customers and users: %+v, %v (want 50 customers and 3 users created, the rest unchanged)", more, err)
	}
}
