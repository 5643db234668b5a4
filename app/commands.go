package app

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// OpenChangeQuote opens a change quote on one of the actor's customers.
func (s *Service) OpenChangeQuote(ctx context.Context, m Meta, customerID string) (Result, error) {
	customer, err := s.LoadCustomer(ctx, m.Actor, customerID)
	if err != nil {
		return Result{}, err
	}
	mspName, err := s.mspName(ctx, customer.MSPID())
	if err != nil {
		return Result{}, err
	}
	id := s.newID()
	q, err := domain.OpenChangeQuote(id, customer, mspName, m.Actor, s.clock.Now())
	if err != nil {
		return Result{}, err
	}
	events, err := s.append(ctx, m, []pending{{id.String(), domain.StreamChangeQuote, q}},
		Result{QuoteID: id, Version: q.Version(), Quote: q}, nil)
	if err != nil {
		return Result{}, err
	}
	s.quotes.put(q)
	return Result{QuoteID: id, Version: q.Version(), Events: events, Quote: q}, nil
}

// AddProduct adds a catalog product with its term and seats.
func (s *Service) AddProduct(ctx context.Context, m Meta, quoteID uuid.UUID, productCode, termType string, seats int) (Result, error) {
	return s.runQuoteWith(ctx, m, quoteID, true, func(_ context.Context, q *domain.ChangeQuote, catalog *domain.Catalog) ([]pending, error) {
		return nil, q.AddProduct(catalog, productCode, termType, seats)
	})
}

// RemoveProduct takes an added product off the quote.
func (s *Service) RemoveProduct(ctx context.Context, m Meta, quoteID uuid.UUID, productCode string) (Result, error) {
	return s.runQuote(ctx, m, quoteID, func(_ context.Context, q *domain.ChangeQuote) ([]pending, error) {
		return nil, q.RemoveProduct(productCode)
	})
}

// ChangeSeats sets a product's new total number of seats.
func (s *Service) ChangeSeats(ctx context.Context, m Meta, quoteID uuid.UUID, productCode string, totalSeats int) (Result, error) {
	return s.runQuoteWith(ctx, m, quoteID, true, func(_ context.Context, q *domain.ChangeQuote, catalog *domain.Catalog) ([]pending, error) {
		return nil, q.ChangeSeats(catalog, productCode, totalSeats)
	})
}

// SaveQuote keeps the quote for later.
func (s *Service) SaveQuote(ctx context.Context, m Meta, quoteID uuid.UUID) (Result, error) {
	return s.runQuote(ctx, m, quoteID, func(_ context.Context, q *domain.ChangeQuote) ([]pending, error) {
		return nil, q.Save(s.clock.Now())
	})
}

// CancelQuote discards the quote.
func (s *Service) CancelQuote(ctx context.Context, m Meta, quoteID uuid.UUID) (Result, error) {
	return s.runQuote(ctx, m, quoteID, func(_ context.Context, q *domain.ChangeQuote) ([]pending, error) {
		return nil, q.Cancel(s.clock.Now())
	})
}

// ReviewOrder freezes the priced lines; Result.Quote.Summary() is the
// Change Order Summary.
func (s *Service) ReviewOrder(ctx context.Context, m Meta, quoteID uuid.UUID) (Result, error) {
	return s.runQuote(ctx, m, quoteID, func(_ context.Context, q *domain.ChangeQuote) ([]pending, error) {
		return nil, q.Review(s.clock.Now())
	})
}

// Acknowledge records the two acknowledgements of the actor.
func (s *Service) Acknowledge(ctx context.Context, m Meta, quoteID uuid.UUID, msaGovernsOrder, authorizedToOrder bool) (Result, error) {
	return s.runQuote(ctx, m, quoteID, func(_ context.Context, q *domain.ChangeQuote) ([]pending, error) {
		return nil, q.Acknowledge(msaGovernsOrder, authorizedToOrder, m.Actor, s.clock.Now())
	})
}

// SubmitOrder submits the order: OrderSubmitted on the quote and
// SubscriptionAmended on the customer, in one transaction, the customer at
// the version the quote's baseline refers to. When another order was
// submitted first, the retry finds the customer changed: baseline_changed.
func (s *Service) SubmitOrder(ctx context.Context, m Meta, quoteID uuid.UUID) (Result, error) {
	return s.runQuote(ctx, m, quoteID, func(ctx context.Context, q *domain.ChangeQuote) ([]pending, error) {
		customer, err := s.LoadCustomer(ctx, m.Actor, q.CustomerID())
		if err != nil {
			return nil, err
		}
		if err := q.Submit(customer, m.Actor, s.clock.Now()); err != nil {
			var de *domain.Error
			if errors.As(err, &de) && de.Code == domain.CodeBaselineChanged {
				// The customer was read after the quote. When the quote
				// moved in between (a concurrent submit of this very quote
				// amended the customer), the two reads do not belong
				// together: decide again on both, which finds the quote
				// closed.
				if v, verr := s.store.StreamVersion(ctx, q.ID().String()); verr == nil && v != q.Version() {
					return nil, &eventstore.VersionConflictError{StreamID: q.ID().String(), Expected: q.Version(), Actual: v}
				}
			}
			return nil, err
		}
		return []pending{{customer.ID(), domain.StreamCustomer, customer}}, nil
	})
}
