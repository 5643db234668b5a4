package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/upsell-dev/upsell/domain"
	"github.com/upsell-dev/upsell/eventstore"
)

// TimeLayout is how the history prints times: UTC, RFC 3339 with the
// microseconds the database keeps, so a time copied from the table can be
// given to --as-of exactly.
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// actor is "msp/user" as the metadata records it.
func actor(m eventstore.Metadata) string {
	if m.MSPID == "" && m.UserID == "" {
		return "-"
	}
	return m.MSPID + "/" + m.UserID
}

// WriteText writes the history as a table, with the state at AsOf when
// it is set, and what the hash chain verification found.
func WriteText(w io.Writer, h *History) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "Change quote %s", h.QuoteID)
	if o := h.Opened; o != nil {
		fmt.Fprintf(ew, ": %s (customer %s), MSP %s", o.CustomerName, o.CustomerID, orID(o.MSPName, o.MSPID))
	}
	fmt.Fprintf(ew, "; now at version %d\n", h.Version)
	if h.AsOf != nil {
		last := h.Entries[len(h.Entries)-1]
		fmt.Fprintf(ew, "As of %s: version %d, recorded %s\n", h.AsOf, last.Version, last.RecordedAt.UTC().Format(TimeLayout))
	}
	fmt.Fprintln(ew)

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tTIME (UTC)\tACTOR\tEVENT\tCHANGE")
	for _, e := range h.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.Version, e.RecordedAt.UTC().Format(TimeLayout), actor(e.Metadata), e.Type, e.Change)
	}
	_ = tw.Flush()

	if q := h.State; q != nil {
		p := q.Preview()
		fmt.Fprintf(ew, "\nState at version %d: %s\n", p.Version, p.Status)
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PRODUCT\tTERM\tPRIOR SEATS\tSEATS\tPRIOR UNIT PRICE\tUNIT PRICE\tMONTHLY")
		for _, l := range StateLines(p) {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", l.ProductName, l.TermType, l.PriorSeats, l.Seats,
				Amount(l.PriorUnitPrice), Amount(l.UnitPrice), Amount(l.MonthlyPayment))
		}
		_ = tw.Flush()
		fmt.Fprintf(ew, "Monthly total: %s → %s %s (%s)\n", Amount(p.PriorMonthlyTotal), Amount(p.NewMonthlyTotal), p.Currency, Signed(p.MonthlyDifference))
	}

	fmt.Fprintln(ew)
	if h.Chain == nil {
		fmt.Fprintf(ew, "Hash chain: intact, %d events verified (the whole stream).\n", h.Verified)
	} else {
		fmt.Fprintf(ew, "Hash chain: BROKEN: %v\n", h.Chain)
	}
	return ew.err
}

// Line is a product line of the quote's state: what the subscription
// becomes if the order is submitted.
type Line struct {
	ProductCode    string       `json:"product_code"`
	ProductName    string       `json:"product_name"`
	TermType       string       `json:"term_type"`
	PriorSeats     int          `json:"prior_seats"`
	Seats          int          `json:"seats"`
	PriorUnitPrice domain.Money `json:"prior_unit_price"`
	UnitPrice      domain.Money `json:"unit_price"`
	MonthlyPayment domain.Money `json:"monthly_payment"`
}

// StateLines reads the lines from a Preview Change Quote: the current
// products with their seat changes applied, then the added products.
func StateLines(p domain.Preview) []Line {
	lines := make([]Line, 0, len(p.CurrentProducts)+len(p.AddedProducts))
	for _, c := range p.CurrentProducts {
		l := Line{ProductCode: c.ProductCode, ProductName: c.ProductName, TermType: c.TermType,
			PriorSeats: c.Seats, Seats: c.Seats, PriorUnitPrice: c.UnitPrice, UnitPrice: c.UnitPrice, MonthlyPayment: c.MonthlyPayment}
		for _, ch := range p.ChangesToExistingProducts {
			if ch.ProductCode == c.ProductCode && ch.Quantity > 0 {
				l.Seats, l.UnitPrice, l.MonthlyPayment = ch.Quantity, ch.UnitPrice, ch.MonthlyPayment
			}
		}
		lines = append(lines, l)
	}
	for _, a := range p.AddedProducts {
		lines = append(lines, Line{ProductCode: a.ProductCode, ProductName: a.ProductName, TermType: a.TermType,
			Seats: a.Seats, PriorUnitPrice: domain.Zero(p.Currency), UnitPrice: a.UnitPrice, MonthlyPayment: a.MonthlyPayment})
	}
	return lines
}

// Event is one event as an auditor reads it: the shape of the API's
// GET /v1/change-quotes/{id}/events (API.md), which serves it too.
type Event struct {
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Version       int64           `json:"version"`
	Position      int64           `json:"position"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Actor         domain.Actor    `json:"actor"`
	CorrelationID *string         `json:"correlation_id"`
	CausationID   *string         `json:"causation_id"`
	Data          json.RawMessage `json:"data"`
}

// NewEvent is e as an auditor reads it.
func NewEvent(e eventstore.Event) Event {
	return Event{
		EventID: e.ID.String(), Type: e.Type, SchemaVersion: e.SchemaVersion, Version: e.Version, Position: e.Position,
		RecordedAt: e.RecordedAt.UTC(), Actor: domain.Actor{MSPID: e.Metadata.MSPID, UserID: e.Metadata.UserID},
		CorrelationID: nonEmpty(e.Metadata.CorrelationID), CausationID: nonEmpty(e.Metadata.CausationID),
		Data: e.Data,
	}
}

// JSONEvent is an event as `upsell audit --json` prints it: the API's
// fields, its hash and the change in words.
type JSONEvent struct {
	Event
	Hash   string `json:"hash"`
	Change string `json:"change"`
}

// JSONState is the quote at AsOf.
type JSONState struct {
	Version int64           `json:"version"`
	Status  domain.Status   `json:"status"`
	Lines   []Line          `json:"lines"`
	Preview domain.Preview  `json:"preview"`
	Summary *domain.Summary `json:"summary"` // null unless reviewed
}

// JSONChain is what the verification of the stream's hash chain found.
type JSONChain struct {
	Intact         bool                   `json:"intact"`
	VerifiedEvents int64                  `json:"verified_events"`
	FirstBadEvent  *eventstore.ChainError `json:"first_bad_event,omitempty"`
	Error          string                 `json:"error,omitempty"`
}

// JSONHistory is the whole of `upsell audit --json`.
type JSONHistory struct {
	QuoteID string      `json:"quote_id"`
	Version int64       `json:"version"`
	AsOf    *JSONAsOf   `json:"as_of,omitempty"`
	Events  []JSONEvent `json:"events"`
	State   *JSONState  `json:"state,omitempty"`
	Chain   JSONChain   `json:"chain"`
}

// JSONAsOf is the point asked for.
type JSONAsOf struct {
	Version int64      `json:"version,omitempty"`
	Time    *time.Time `json:"time,omitempty"`
}

// WriteJSON writes the history as one JSON document (JSONHistory).
func WriteJSON(w io.Writer, h *History) error {
	out := JSONHistory{QuoteID: h.QuoteID.String(), Version: h.Version, Events: make([]JSONEvent, len(h.Entries))}
	for i, e := range h.Entries {
		out.Events[i] = JSONEvent{Event: NewEvent(e.Event), Hash: hex.EncodeToString(e.Hash), Change: e.Change}
	}
	if a := h.AsOf; a != nil {
		out.AsOf = &JSONAsOf{Version: a.Version}
		if a.Version == 0 {
			t := a.Time.UTC()
			out.AsOf.Time = &t
		}
	}
	if q := h.State; q != nil {
		p := q.Preview()
		out.State = &JSONState{Version: p.Version, Status: p.Status, Lines: StateLines(p), Preview: p}
		if s, err := q.Summary(); err == nil {
			out.State.Summary = &s
		}
	}
	out.Chain = JSONChain{Intact: h.Chain == nil, VerifiedEvents: h.Verified}
	if h.Chain != nil {
		out.Chain.Error = h.Chain.Error()
		var ce *eventstore.ChainError
		if errors.As(h.Chain, &ce) {
			out.Chain.FirstBadEvent = ce
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// errWriter keeps the first write error, so a report checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
