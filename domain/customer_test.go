package domain_test

import (
	"slices"
	"testing"
	"time"

	"github.com/upsell-dev/upsell/domain"
)

func TestOnboardCustomerRefusals(t *testing.T) {
	t.Parallel()
	type args struct {
		id, msp, name, currency string
		lines                   []domain.Line
	}
	tests := []struct {
		name      string
		mutate    func(*args)
		want      *domain.Error
		wantField string
	}{
		{"empty id", func(a *args) { a.id = "" }, domain.ErrInvalidCustomer, "id"},
		{"empty msp", func(a *args) { a.msp = "" }, domain.ErrInvalidCustomer, "msp_id"},
		{"empty name", func(a *args) { a.name = "" }, domain.ErrInvalidCustomer, "name"},
		{"unknown currency", func(a *args) { a.currency = "XYZ" }, domain.ErrUnknownCurrency, "currency"},
		{"duplicate product line", func(a *args) { a.lines[1].ProductCode = emailSec }, domain.ErrProductAlreadyPresent, "subscriptions[1].product_code"},
		{"zero seats", func(a *args) { a.lines[1].Seats = 0 }, domain.ErrInvalidSeats, "subscriptions[1].seats"},
		{"negative seats", func(a *args) { a.lines[0].Seats = -5 }, domain.ErrInvalidSeats, "subscriptions[0].seats"},
		{"seats above MaxSeats", func(a *args) { a.lines[1].Seats = domain.MaxSeats + 1 }, domain.ErrInvalidSeats, "subscriptions[1].seats"},
		{"negative price", func(a *args) { a.lines[1].UnitPrice = domain.MustMoney("-1.65") }, domain.ErrInvalidCustomer, "subscriptions[1].unit_price"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := args{"cust-contoso", "msp-northwind", "Contoso Ltd", "USD", contosoLines()}
			tt.mutate(&a)
			c, err := domain.OnboardCustomer(a.id, a.msp, a.name, a.currency, a.lines, t0)
			de := assertCode(t, err, tt.want)
			if de.Field != tt.wantField {
				t.Fatalf("Field = %q, want %q (%v)", de.Field, tt.wantField, err)
			}
			if c != nil {
				t.Fatal("a refused onboarding returned a customer")
			}
		})
	}
}

func TestOnboardCustomer(t *testing.T) {
	t.Parallel()
	lines := contosoLines()
	lines[1].UnitPrice = domain.MustMoney("1.6") // normalised to the minor unit
	at := time.Date(2025, 3, 14, 11, 30, 0, 0, time.FixedZone("CET+2", 2*3600))
	c, err := domain.OnboardCustomer("cust-contoso", "msp-northwind", "Contoso Ltd", "USD", lines, at)
	must(t, err)

	if c.ID() != "cust-contoso" || c.MSPID() != "msp-northwind" || c.Name() != "Contoso Ltd" || c.Currency() != "USD" {
		t.Fatalf("customer = %s %s %s %s", c.ID(), c.MSPID(), c.Name(), c.Currency())
	}
	want := []string{
		"EMAIL-SEC|Email Security Cloud Gateway|12 Month|true|682|3.25",
		"ARCHIVE|Cloud Archive|12 Month|true|682|1.60",
	}
	if got := lineStrings(c.Lines()); !slices.Equal(got, want) {
		t.Fatalf("Lines()\n got %q\nwant %q", got, want)
	}
	if c.Version() != 1 || c.ExpectedVersion() != 0 || len(c.Changes()) != 1 {
		t.Fatalf("new customer: Version %d, ExpectedVersion %d, %d changes; want 1, 0, 1", c.Version(), c.ExpectedVersion(), len(c.Changes()))
	}
	e := lastEvent[domain.CustomerOnboarded](t, c.Changes())
	if e.CustomerID != "cust-contoso" || e.MSPID != "msp-northwind" || e.Name != "Contoso Ltd" || e.Currency != "USD" {
		t.Fatalf("CustomerOnboarded = %+v", e)
	}
	if !e.OnboardedAt.Equal(at) || e.OnboardedAt.Location() != time.UTC {
		t.Fatalf("OnboardedAt = %v, want %v in UTC", e.OnboardedAt, at.UTC())
	}
	if got := lineStrings(e.Lines); !slices.Equal(got, want) {
		t.Fatalf("event lines\n got %q\nwant %q", got, want)
	}

	t.Run("Lines returns a copy", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		l := c.Lines()
		l[0].Seats = 1
		if c.Lines()[0].Seats != 682 {
			t.Fatal("editing Lines() changed the customer")
		}
	})
	t.Run("a customer without lines", func(t *testing.T) {
		t.Parallel()
		c, err := domain.OnboardCustomer("cust-new", "msp-northwind", "New Co", "EUR", nil, t0)
		must(t, err)
		if len(c.Lines()) != 0 || c.TotalUsers() != 0 || c.MonthlyTotal().String() != "0.00" {
			t.Fatalf("empty customer: %d lines, %d users, total %s", len(c.Lines()), c.TotalUsers(), c.MonthlyTotal())
		}
	})
}

func TestLoadCustomerSurvivesSerialisation(t *testing.T) {
	t.Parallel()
	t.Run("onboarding", func(t *testing.T) {
		t.Parallel()
		live, err := domain.OnboardCustomer("cust-contoso", "msp-northwind", "Contoso Ltd", "USD", contosoLines(), t0)
		must(t, err)
		loaded, err := domain.LoadCustomer(roundTrip(t, live.Changes()))
		must(t, err)
		if loaded.ID() != live.ID() || loaded.MSPID() != live.MSPID() || loaded.Name() != live.Name() || loaded.Currency() != live.Currency() {
			t.Fatalf("loaded %s/%s/%s/%s, live %s/%s/%s/%s", loaded.ID(), loaded.MSPID(), loaded.Name(), loaded.Currency(),
				live.ID(), live.MSPID(), live.Name(), live.Currency())
		}
		if !slices.Equal(lineStrings(loaded.Lines()), lineStrings(live.Lines())) {
			t.Fatalf("lines\nloaded %q\nlive   %q", lineStrings(loaded.Lines()), lineStrings(live.Lines()))
		}
		if loaded.Version() != 1 || loaded.ExpectedVersion() != 1 || len(loaded.Changes()) != 0 {
			t.Fatalf("loaded: Version %d, ExpectedVersion %d, %d changes; want 1, 1, 0", loaded.Version(), loaded.ExpectedVersion(), len(loaded.Changes()))
		}
		if loaded.MonthlyTotal().String() != "3341.80" || loaded.TotalUsers() != 682 {
			t.Fatalf("loaded: total %s, users %d", loaded.MonthlyTotal(), loaded.TotalUsers())
		}
	})
	t.Run("onboarding and an amendment", func(t *testing.T) {
		t.Parallel()
		c := contoso(t)
		onboarded := roundTrip(t, []domain.Event{mustOnboardedEvent(t)})
		submitSeed(t, c)
		loaded, err := domain.LoadCustomer(roundTrip(t, append(onboarded, c.Changes()...)))
		must(t, err)
		want := []string{
			"EMAIL-SEC|Email Security Cloud Gateway|12 Month|true|700|3.20",
			"ARCHIVE|Cloud Archive|12 Month|true|682|1.65",
			"AWARENESS|Security Awareness Training|12 Month|true|700|1.25",
		}
		if got := lineStrings(loaded.Lines()); !slices.Equal(got, want) {
			t.Fatalf("amended lines\n got %q\nwant %q", got, want)
		}
		if loaded.Version() != 2 || loaded.ExpectedVersion() != 2 {
			t.Fatalf("Version %d, ExpectedVersion %d, want 2, 2", loaded.Version(), loaded.ExpectedVersion())
		}
		if loaded.MonthlyTotal().String() != "4240.30" || loaded.TotalUsers() != 700 {
			t.Fatalf("amended: total %s, users %d", loaded.MonthlyTotal(), loaded.TotalUsers())
		}
	})
}

func mustOnboardedEvent(t testing.TB) domain.Event {
	t.Helper()
	c, err := domain.OnboardCustomer("cust-contoso", "msp-northwind", "Contoso Ltd", "USD", contosoLines(), t0)
	must(t, err)
	return c.Changes()[0]
}

func TestLoadCustomerRefusals(t *testing.T) {
	t.Parallel()
	t.Run("no events is not found", func(t *testing.T) {
		t.Parallel()
		for _, h := range [][]domain.Event{nil, {}} {
			c, err := domain.LoadCustomer(h)
			assertCode(t, err, domain.ErrNotFound)
			if c != nil {
				t.Fatal("returned a customer")
			}
		}
	})
	t.Run("stream that does not start with CustomerOnboarded", func(t *testing.T) {
		t.Parallel()
		if c, err := domain.LoadCustomer([]domain.Event{domain.SubscriptionAmended{CustomerID: "cust-contoso"}}); err == nil || c != nil {
			t.Fatalf("LoadCustomer = %v, %v; want an error", c, err)
		}
	})
	t.Run("a quote event in a customer stream", func(t *testing.T) {
		t.Parallel()
		h := []domain.Event{mustOnboardedEvent(t), domain.QuoteSaved{SavedAt: t0}}
		if c, err := domain.LoadCustomer(h); err == nil || c != nil {
			t.Fatalf("LoadCustomer = %v, %v; want an error", c, err)
		}
	})
}

func TestCustomerTotalUsersAndMonthlyTotal(t *testing.T) {
	t.Parallel()
	line := func(code string, perUser bool, seats int, price string) domain.Line {
		return domain.Line{ProductCode: code, ProductName: code, TermType: month12, PerUser: perUser, Seats: seats, UnitPrice: domain.MustMoney(price)}
	}
	tests := []struct {
		name      string
		currency  string
		lines     []domain.Line
		wantUsers int
		wantTotal string
	}{
		{"Contoso: 682 x 3.25 + 682 x 1.65", "USD", contosoLines(), 682, "3341.80"},
		{"largest per-user line", "USD", []domain.Line{line(emailSec, true, 120, "3.90"), line(archive, true, 300, "1.65")}, 300, "963.00"},
		{"a per-domain product does not count", "USD", []domain.Line{line(emailSec, true, 25, "3.15"), line(dmarc, false, 1000, "45")}, 25, "45078.75"},
		{"only per-domain products", "USD", []domain.Line{line(dmarc, false, 3, "45")}, 0, "135.00"},
		{"totals are sums of rounded lines", "USD", []domain.Line{line("A", true, 1, "0.005"), line("B", true, 1, "0.005")}, 1, "0.02"},
		{"JPY: sums of rounded lines", "JPY", []domain.Line{line("A", true, 3, "0.5"), line("B", true, 3, "0.5")}, 3, "4"},
		{"no lines", "USD", nil, 0, "0.00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := domain.OnboardCustomer("cust-x", "msp-northwind", "X", tt.currency, tt.lines, t0)
			must(t, err)
			if got := c.TotalUsers(); got != tt.wantUsers {
				t.Errorf("TotalUsers = %d, want %d", got, tt.wantUsers)
			}
			if got := c.MonthlyTotal().String(); got != tt.wantTotal {
				t.Errorf("MonthlyTotal = %q, want %q", got, tt.wantTotal)
			}
		})
	}
}
