package audit

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/upsell-dev/upsell/eventstore"
)

// VerifyQuote recomputes the hash chain of one quote's stream. It returns
// ErrNotFound when the stream has no events, and a *eventstore.ChainError
// (errors.Is eventstore.ErrChainBroken) naming the first bad event.
func VerifyQuote(ctx context.Context, db eventstore.DBTX, quoteID uuid.UUID) (eventstore.ChainStats, error) {
	stats, err := eventstore.VerifyStream(ctx, db, quoteID.String())
	if err == nil && stats.Streams == 0 {
		return stats, &NotFoundError{QuoteID: quoteID}
	}
	return stats, err
}

// VerifyAll recomputes the hash chain of every stream, reporting its
// progress on progress (see Progress), and returns what it checked, or a
// *eventstore.ChainError naming the first bad event.
func VerifyAll(ctx context.Context, db eventstore.DBTX, progress *Progress) (eventstore.ChainStats, error) {
	var report func(eventstore.ChainStats)
	if progress != nil {
		report = progress.Report
	}
	return eventstore.VerifyAll(ctx, db, report)
}

// Progress prints a long verification's progress: a line every Every
// (events checked, streams, rate), so that an operator sees it move.
type Progress struct {
	W     io.Writer
	Every time.Duration
	Now   func() time.Time
	start time.Time
	last  time.Time
}

// NewProgress reports on w every 5 seconds by the system clock.
func NewProgress(w io.Writer) *Progress {
	return &Progress{W: w, Every: 5 * time.Second, Now: time.Now}
}

// Start marks the beginning of the run, from which rates are measured.
func (p *Progress) Start() {
	p.start = p.Now()
	p.last = p.start
}

// Report prints a line when Every has passed since the last.
func (p *Progress) Report(s eventstore.ChainStats) {
	if p.start.IsZero() {
		p.Start()
	}
	now := p.Now()
	if now.Sub(p.last) < p.Every {
		return
	}
	p.last = now
	fmt.Fprintf(p.W, "verify: %s events checked in %s streams, %s events/s\n",
		count(s.Events), count(s.Streams), count(int64(rate(s.Events, now.Sub(p.start)))))
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// count prints a whole number with thousands separators.
func count(n int64) string { return thousands(strconv.FormatInt(n, 10)) }
