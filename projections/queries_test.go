package projections_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/importer"
	"github.com/upsell-dev/upsell/projections"
)

type listed struct{ id, name, letter string }

// wantList checks a list against the customers expected, in order.
func wantList(t *testing.T, what string, got []projections.CustomerItem, want []listed) {
	t.Helper()
	var g, w []string
	for _, it := range got {
		g = append(g, it.ID+" "+it.Name)
	}
	for _, it := range want {
		w = append(w, it.id+" "+it.name)
	}
	if !slices.Equal(g, w) {
		t.Errorf("%s:\n got  %q\n want %q", what, g, w)
	}
}

// sortedByName orders customers as the list does: by lower-cased name, byte
// by byte, then by id.
func sortedByName(cs []listed) []listed {
	out := slices.Clone(cs)
	slices.SortFunc(out, func(a, b listed) int {
		if c := strings.Compare(strings.ToLower(a.name), strings.ToLower(b.name)); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return out
}

func TestCustomerList(t *testing.T) {
	t.Parallel()
	pool := sharedPool(t)
	ctx := t.Context()
	tok := token()
	up := strings.ToUpper(tok)
	// Each name with the letter it is filed under: its first letter
	// without accents, upper-cased, or # (a digit, another script).
	names := [][2]string{
		{"Alpha " + up + " Co", "A"}, {"alpha " + tok + " two", "A"}, {"Beta " + tok, "B"},
		{"Delta 50% " + tok, "D"}, {"Delta 50 pct " + tok, "D"},
		{"Echo a_b " + tok, "E"}, {"Echo axb " + tok, "E"},
		{`Foxtrot c\d ` + tok, "F"}, {"Foxtrot cd " + tok, "F"},
		{"1st " + tok + " Dental", "#"}, {"Ωmega " + tok, "#"},
		{"Émile " + up, "E"}, {"émile " + tok + " lower", "E"}, {"Ñandú " + tok, "N"},
		{"Same " + tok, "S"}, {"Same " + tok, "S"}, {"Same " + tok, "S"},
		{"zulu " + tok, "Z"},
	}
	var mine []listed
	var cs []importer.Customer
	for i, n := range names {
		// ids not in name order, so that the order is the list's own
		id := fmt.Sprintf("cust-%s-%02d", tok, (i*7)%len(names))
		mine = append(mine, listed{id, n[0], n[1]})
		cs = append(cs, customerLike(t, id, alex.MSPID, n[0]))
	}
	other := listed{"cust-" + tok + "-other", "Alpha " + tok + " of another MSP", "A"}
	cs = append(cs, customerLike(t, other.id, kim.MSPID, other.name))
	importCustomers(t, pool, cs...)
	r := startRunner(t, pool, 0)
	waitFor(t, pool, newest(t, pool))

	views := projections.NewQueries(pool)
	list := func(what string, f projections.CustomerFilter) []projections.CustomerItem {
		t.Helper()
		if f.Limit == 0 {
			f.Limit = projections.MaxCustomerPage
		}
		page, err := views.Customers(ctx, alex.MSPID, f)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if page.NextCursor != nil {
			t.Errorf("%s: a next cursor on a page of %d", what, len(page.Customers))
		}
		return page.Customers
	}
	where := func(keep func(l listed) bool) []listed {
		var out []listed
		for _, l := range sortedByName(mine) {
			if keep(l) {
				out = append(out, l)
			}
		}
		return out
	}

	all := list("q=token", projections.CustomerFilter{Query: tok})
	wantList(t, "search by the token", all, sortedByName(mine))
	for _, it := range all {
		if it.TotalUsers != 682 || it.MonthlyTotal.String() != "3341.80" {
			t.Errorf("%s: %d users, %s a month; want 682 and 3341.80", it.Name, it.TotalUsers, it.MonthlyTotal)
		}
	}
	wantList(t, "search in upper case", list("q=TOKEN", projections.CustomerFilter{Query: up}), sortedByName(mine))
	wantList(t, "search anywhere", list("q=pha token", projections.CustomerFilter{Query: "PHA " + tok}),
		where(func(l listed) bool { return strings.HasPrefix(strings.ToLower(l.name), "alpha") }))
	wantList(t, "search for a non-ASCII letter in another case", list("q=ÉMILE token", projections.CustomerFilter{Query: "ÉMILE " + tok}),
		where(func(l listed) bool { return strings.HasPrefix(strings.ToLower(l.name), "émile") }))
	for _, lit := range []string{"50% ", "a_b ", `c\d `} {
		wantList(t, fmt.Sprintf("search for %q literally", lit), list("q="+lit, projections.CustomerFilter{Query: lit + tok}),
			where(func(l listed) bool { return strings.Contains(l.name, lit+tok) }))
	}
	wantList(t, "search for nothing of the MSP's", list("q=other", projections.CustomerFilter{Query: tok + " of another"}), nil)

	for _, letter := range []string{"#", "A", "E", "N", "S", "Z", "Q"} {
		want := where(func(l listed) bool { return l.letter == letter })
		wantList(t, "letter "+letter, list("letter "+letter, projections.CustomerFilter{Query: tok, Letter: letter}), want)
	}

	// Keyset pages of 2 give every customer once, in name order; ties on the
	// name are broken by id, across pages too.
	for _, limit := range []int{1, 2, 3} {
		var got []projections.CustomerItem
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > len(mine) {
				t.Fatalf("limit %d: more pages than customers", limit)
			}
			page, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Query: tok, Limit: limit, Cursor: cursor})
			if err != nil {
				t.Fatalf("limit %d, page %d: %v", limit, pages+1, err)
			}
			if len(page.Customers) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(page.Customers))
			}
			got = append(got, page.Customers...)
			if page.NextCursor == nil {
				break
			}
			if len(page.Customers) != limit {
				t.Errorf("limit %d: a page of %d before the last", limit, len(page.Customers))
			}
			cursor = *page.NextCursor
		}
		wantList(t, fmt.Sprintf("pages of %d", limit), got, sortedByName(mine))
	}
	// With a letter too.
	page, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Query: tok, Letter: "E", Limit: 2})
	if err != nil || page.NextCursor == nil || len(page.Customers) != 2 {
		t.Fatalf("letter E by 2: %+v, %v", page, err)
	}
	rest, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Query: tok, Letter: "E", Limit: 2, Cursor: *page.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	wantList(t, "letter E by 2", append(page.Customers, rest.Customers...), where(func(l listed) bool { return l.letter == "E" }))

	// Pages stay consistent while customers are added: one sorting before
	// the cursor does not shift the next page.
	first, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Query: tok, Limit: 4})
	if err != nil || first.NextCursor == nil {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	early := listed{"cust-" + tok + "-early", "Aaa " + tok, "A"}
	importCustomers(t, pool, customerLike(t, early.id, alex.MSPID, early.name))
	waitFor(t, pool, newest(t, pool))
	second, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Query: tok, Limit: 4, Cursor: *first.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	wantList(t, "the page after the cursor once a customer sorts before it", second.Customers, sortedByName(mine)[4:8])
	wantList(t, "the list with the new customer", list("q=token again", projections.CustomerFilter{Query: tok}),
		sortedByName(append(slices.Clone(mine), early)))

	// Another MSP sees its own only.
	kims, err := views.Customers(ctx, kim.MSPID, projections.CustomerFilter{Query: tok, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantList(t, "the other MSP's list", kims.Customers, []listed{other})
	if _, err := views.Customer(ctx, alex.MSPID, other.id); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("another MSP's customer: err = %v, want not_found", err)
	}

	r.stop()
	r.noErrors()
}

func TestCustomerListRefusals(t *testing.T) {
	t.Parallel()
	views := projections.NewQueries(sharedPool(t))
	ctx := t.Context()
	for _, limit := range []int{0, -1, projections.MaxCustomerPage + 1} {
		if _, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Limit: limit}); err == nil {
			t.Errorf("limit %d accepted", limit)
		}
	}
	for _, limit := range []int{1, projections.MaxCustomerPage} {
		if _, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Limit: limit, Query: token()}); err != nil {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	for _, c := range []string{
		"not a cursor!",
		b64([]byte(`["only one"]`)),
		b64([]byte(`["a","b","c"]`)),
		b64([]byte(`{"name":"a","id":"b"}`)),
		b64([]byte(`[1,2]`)),
		b64([]byte(`null`)),
		b64([]byte(`not json`)),
		base64.StdEncoding.EncodeToString([]byte(`["a","b"]`)) + "=",
	} {
		_, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Limit: 2, Cursor: c})
		if !errors.Is(err, projections.ErrInvalidCursor) {
			t.Errorf("cursor %q: err = %v, want ErrInvalidCursor", c, err)
		}
	}
	// A well-formed cursor of this list is accepted.
	if _, err := views.Customers(ctx, alex.MSPID, projections.CustomerFilter{Limit: 2, Cursor: b64([]byte(`["m","cust-x"]`))}); err != nil {
		t.Errorf("a well-formed cursor: %v", err)
	}
}

func TestInitial(t *testing.T) {
	for name, want := range map[string]string{
		"Contoso": "C", "adatum": "A", "émile": "E", "Émile": "E", "Ñandú": "N", "Øresund": "#",
		"1st Street": "#", "Ωmega": "#", "東京": "#", "  zed": "Z", "": "#", "%off": "#",
	} {
		if got := projections.Initial(name); got != want {
			t.Errorf("Initial(%q) = %q, want %q", name, got, want)
		}
	}
}
