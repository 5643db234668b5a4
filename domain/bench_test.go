package domain_test

import (
	"testing"

	"github.com/upsell-dev/upsell/domain"
)

// benchHistory is a quote stream of ten events, as the event store hands
// them back (decoded).
func benchHistory(b *testing.B) (*domain.Catalog, []domain.Event) {
	b.Helper()
	cat := fixtureCatalog(b)
	q := openQuote(b, contoso(b), quoteID)
	must(b, q.ChangeSeats(cat, emailSec, 700))
	must(b, q.AddProduct(cat, awareness, month12, 700))
	must(b, q.AddProduct(cat, dmarc, month12, 2))
	must(b, q.Save(t0))
	must(b, q.ChangeSeats(cat, dmarc, 3))
	must(b, q.ChangeSeats(cat, archive, 700))
	must(b, q.RemoveProduct(dmarc))
	must(b, q.Review(tReview))
	must(b, q.Acknowledge(true, true, sam, tAck))
	h := roundTrip(b, q.Changes())
	if len(h) != 10 {
		b.Fatalf("history has %d events, want 10", len(h))
	}
	return cat, h
}

func BenchmarkDecideChangeSeats(b *testing.B) {
	cat, h := benchHistory(b)
	b.ReportAllocs()
	for b.Loop() {
		q, err := domain.LoadChangeQuote(h)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.ChangeSeats(cat, emailSec, 800); err != nil {
			b.Fatal(err)
		}
		if len(q.Changes()) != 1 {
			b.Fatal("ChangeSeats recorded nothing")
		}
	}
}

// reviewedEvent is the largest event of a quote: the frozen summary.
func reviewedEvent(b *testing.B) domain.Event {
	b.Helper()
	_, h := benchHistory(b)
	return h[8]
}

func BenchmarkEncodeEvent(b *testing.B) {
	e := reviewedEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := domain.EncodeEvent(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	typ, ver, data, err := domain.EncodeEvent(reviewedEvent(b))
	if err != nil {
		b.Fatal(err)
	}
	if typ != "OrderReviewed" {
		b.Fatalf("benchmarking %s, want OrderReviewed", typ)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := domain.DecodeEvent(typ, ver, data); err != nil {
			b.Fatal(err)
		}
	}
}
