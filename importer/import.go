package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/upsell-dev/upsell/catalog"
	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// Report counts what an import did.
type Report struct {
	MSPs, Users, Products, Customers Counts
}

// Counts splits the entities of one kind by what became of them.
type Counts struct {
	Created, Updated, Unchanged int
}

func (c Counts) String() string {
	return fmt.Sprintf("%d created, %d updated, %d unchanged", c.Created, c.Updated, c.Unchanged)
}

// Unchanged reports whether the import wrote nothing at all.
func (r Report) Unchanged() bool {
	return r.MSPs.Created+r.MSPs.Updated+r.Users.Created+r.Users.Updated+
		r.Products.Created+r.Products.Updated+r.Customers.Created+r.Customers.Updated == 0
}

// Import checks the file against itself and the database, then writes it in
// one transaction. MSPs, users and products are created or updated in
// place; a customer already onboarded with the same data is left alone, and
// one onboarded with other data is refused, since onboarding is a recorded
// fact. On any error nothing is written.
func Import(ctx context.Context, store *eventstore.Store, f *File, clock domain.Clock) (Report, error) {
	var rep Report
	err := pgx.BeginFunc(ctx, store.Pool(), func(tx pgx.Tx) error {
		db, err := readKnown(ctx, tx)
		if err != nil {
			return err
		}
		c, err := validate(f, db)
		if err != nil {
			return err
		}
		if rep.MSPs, rep.Users, err = writeMSPs(ctx, tx, c.msps); err != nil {
			return err
		}
		if rep.Products, err = writeProducts(ctx, tx, c.products); err != nil {
			return err
		}
		rep.Customers, err = onboardCustomers(ctx, store, tx, c.customers, clock)
		return err
	})
	if isUniqueViolation(err, "msp_users_api_key_hash_key") {
		return Report{}, &InvalidFileError{Problems: []Problem{{
			Message: "an API key of the file would belong to two users (one of them already in the database)",
		}}}
	}
	return rep, err
}

func readKnown(ctx context.Context, tx pgx.Tx) (known, error) {
	k := known{mspIDs: map[string]bool{}, products: map[string]domain.Product{}, keys: map[userRef]string{}}
	rows, err := tx.Query(ctx, `SELECT id FROM msps`)
	if err != nil {
		return k, fmt.Errorf("read MSPs: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return k, fmt.Errorf("read MSPs: %w", err)
	}
	for _, id := range ids {
		k.mspIDs[id] = true
	}
	rows, err = tx.Query(ctx, `SELECT msp_id, id, api_key_hash FROM msp_users`)
	if err != nil {
		return k, fmt.Errorf("read users: %w", err)
	}
	var ref userRef
	var hash []byte
	if _, err := pgx.ForEachRow(rows, []any{&ref.msp, &ref.user, &hash}, func() error {
		k.keys[ref] = string(hash)
		return nil
	}); err != nil {
		return k, fmt.Errorf("read users: %w", err)
	}
	products, err := catalog.Products(ctx, tx)
	if err != nil {
		return k, err
	}
	for _, p := range products {
		k.products[p.Code] = p
	}
	return k, nil
}

// tally counts a row an upsert returned: created when it was inserted
// (xmax = 0), else updated. Identical rows are not returned at all.
func tally(c *Counts, inserted bool) {
	if inserted {
		c.Created++
	} else {
		c.Updated++
	}
}

func writeMSPs(ctx context.Context, tx pgx.Tx, msps []MSP) (mspCounts, userCounts Counts, err error) {
	for _, m := range msps {
		var inserted bool
		err := tx.QueryRow(ctx, `
			INSERT INTO msps (id, name) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
			WHERE msps.name IS DISTINCT FROM EXCLUDED.name
			RETURNING xmax = 0`, m.ID, m.Name).Scan(&inserted)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			mspCounts.Unchanged++
		case err != nil:
			return mspCounts, userCounts, fmt.Errorf("write MSP %q: %w", m.ID, err)
		default:
			tally(&mspCounts, inserted)
		}
		for _, u := range m.Users {
			err := tx.QueryRow(ctx, `
				INSERT INTO msp_users (msp_id, id, name, api_key_hash) VALUES ($1, $2, $3, $4)
				ON CONFLICT (msp_id, id) DO UPDATE SET name = EXCLUDED.name, api_key_hash = EXCLUDED.api_key_hash
				WHERE (msp_users.name, msp_users.api_key_hash) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.api_key_hash)
				RETURNING xmax = 0`, m.ID, u.ID, u.Name, HashAPIKey(u.APIKey)).Scan(&inserted)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				userCounts.Unchanged++
			case err != nil:
				return mspCounts, userCounts, fmt.Errorf("write user %q of MSP %q: %w", u.ID, m.ID, err)
			default:
				tally(&userCounts, inserted)
			}
		}
	}
	return mspCounts, userCounts, nil
}

func writeProducts(ctx context.Context, tx pgx.Tx, products []domain.Product) (Counts, error) {
	var c Counts
	for _, p := range products {
		tiers, err := json.Marshal(p.Tiers)
		if err != nil {
			return c, fmt.Errorf("encode tiers of %s: %w", p.Code, err)
		}
		var inserted bool
		err = tx.QueryRow(ctx, `
			INSERT INTO products (code, name, per_user, currency, term_types, tiers)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, per_user = EXCLUDED.per_user,
				currency = EXCLUDED.currency, term_types = EXCLUDED.term_types, tiers = EXCLUDED.tiers
			WHERE (products.name, products.per_user, products.currency, products.term_types, products.tiers)
				IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.per_user, EXCLUDED.currency, EXCLUDED.term_types, EXCLUDED.tiers)
			RETURNING xmax = 0`, p.Code, p.Name, p.PerUser, p.Currency, p.TermTypes, tiers).Scan(&inserted)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			c.Unchanged++
		case err != nil:
			return c, fmt.Errorf("write product %s: %w", p.Code, err)
		default:
			tally(&c, inserted)
		}
	}
	return c, nil
}

func onboardCustomers(ctx context.Context, store *eventstore.Store, tx pgx.Tx, customers []checkedCustomer, clock domain.Clock) (Counts, error) {
	var c Counts
	runID := uuid.NewString()
	var appends []eventstore.Append
	var probs []Problem
	for _, cc := range customers {
		existing, err := eventstore.LoadTx(ctx, tx, cc.customer.ID, eventstore.LoadOptions{UpToVersion: 1})
		if err != nil {
			return c, fmt.Errorf("%s: read customer %q: %w", cc.path, cc.customer.ID, err)
		}
		fresh, err := domain.OnboardCustomer(cc.customer.ID, cc.customer.MSPID, cc.customer.Name, cc.currency, cc.lines, clock.Now())
		if err != nil {
			return c, fmt.Errorf("%s: %w", cc.path, err) // validate let it through: a bug
		}
		onboarded := fresh.Changes()[0].(domain.CustomerOnboarded)
		if len(existing) > 0 {
			if diff := sameOnboarding(existing[0], onboarded); diff != "" {
				probs = append(probs, Problem{Path: cc.path, Message: diff})
			} else {
				c.Unchanged++
			}
			continue
		}
		_, schema, data, err := domain.EncodeEvent(onboarded)
		if err != nil {
			return c, err
		}
		appends = append(appends, eventstore.Append{
			StreamID: cc.customer.ID, StreamType: domain.StreamCustomer, ExpectedVersion: eventstore.NoStream,
			Events: []eventstore.NewEvent{{
				Type: onboarded.EventType(), SchemaVersion: schema, Data: data,
				Metadata: eventstore.Metadata{MSPID: cc.customer.MSPID, UserID: "import", CorrelationID: runID, CausationID: runID},
			}},
		})
		c.Created++
	}
	if len(probs) > 0 {
		return c, &InvalidFileError{Problems: probs}
	}
	if len(appends) == 0 {
		return c, nil
	}
	if _, err := store.AppendTx(ctx, tx, appends...); err != nil {
		return c, fmt.Errorf("onboard customers: %w", err)
	}
	return c, nil
}

// sameOnboarding compares a stored first event with the onboarding the file
// asks for, on what the file gives (not the product names and kinds the
// catalog adds, nor when it happened); it says what differs, or "".
func sameOnboarding(stored eventstore.Event, want domain.CustomerOnboarded) string {
	if stored.StreamType != domain.StreamCustomer {
		return fmt.Sprintf("the id %q is already used by a %s stream", want.CustomerID, stored.StreamType)
	}
	ev, err := domain.DecodeEvent(stored.Type, stored.SchemaVersion, stored.Data)
	if err != nil {
		return fmt.Sprintf("customer %q: its stored onboarding cannot be read: %v", want.CustomerID, err)
	}
	got, ok := ev.(domain.CustomerOnboarded)
	if !ok {
		return fmt.Sprintf("customer %q: its stream starts with %s", want.CustomerID, stored.Type)
	}
	type line struct {
		Product, Term, Price string
		Seats                int
	}
	type given struct {
		MSP, Name, Currency string
		Lines               []line
	}
	of := func(o domain.CustomerOnboarded) given {
		g := given{MSP: o.MSPID, Name: o.Name, Currency: o.Currency}
		for _, l := range o.Lines {
			// The decimal's value, not its scale: "3.2" and "3.20" are one price.
			g.Lines = append(g.Lines, line{l.ProductCode, l.TermType, l.UnitPrice.Decimal().String(), l.Seats})
		}
		return g
	}
	if a, b := of(got), of(want); !reflect.DeepEqual(a, b) {
		return fmt.Sprintf("customer %q was onboarded with other data (stored %+v, file %+v); onboarding is a recorded fact and an import cannot change it",
			want.CustomerID, a, b)
	}
	return ""
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}
