package domain

import (
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The events' JSON is decoded by hand first, and by encoding/json only when
// the hand-written decoder declines. Replaying the log is mostly decoding
// (a rebuild of the read models spent 40% of its time in encoding/json's
// reflection), and the stored JSON has one shape per event type: the one
// EncodeEvent writes, as PostgreSQL's jsonb gives it back (keys reordered,
// a space after each colon and comma).
//
// The rule that keeps both decoders the same: the fast one accepts only
// input on which it is sure to give exactly what encoding/json gives, and
// declines everything else, so that encoding/json decides it, errors and
// all. It declines, among others: any escape in a string, invalid UTF-8,
// null, an unknown or repeated key (encoding/json matches keys without
// regard to case and lets the last of a repeated key win), a number that
// is not an integer where the field is one, trailing data, and any error
// of a value's own decoder (Money, time.Time, uuid.UUID), whose error
// encoding/json wraps in its own way. Money, times and ids are decoded by
// their own UnmarshalJSON or UnmarshalText on the same bytes that
// encoding/json hands them. fastjson_test.go compares the two over every
// event type, and FuzzDecodeEvent over whatever the fuzzer makes.

// fastDec reads one JSON document. Once it has declined (bad), every read
// gives a zero value and loops end; the caller checks bad at the end.
type fastDec struct {
	b   []byte
	i   int
	bad bool
}

// decodeFast decodes data with read, or reports false when it declines.
func decodeFast[T any](data []byte, read func(*fastDec, *T)) (T, bool) {
	d := fastDec{b: data}
	var v T
	read(&d, &v)
	d.ws()
	if d.bad || d.i != len(d.b) {
		var zero T
		return zero, false
	}
	return v, true
}

func (d *fastDec) fail() {
	d.bad = true
	d.i = len(d.b)
}

// ws skips JSON whitespace.
func (d *fastDec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// open consumes the bracket that begins an object or an array.
func (d *fastDec) open(c byte) {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return
	}
	d.fail()
}

// more reports whether the object or array whose closing bracket is
// closing has another member, consuming the comma before it, or the
// closing bracket after the last one; n counts the members so far. What
// follows a comma must be a member: the member's own reader declines a
// closing bracket there.
func (d *fastDec) more(closing byte, n *int) bool {
	d.ws()
	if d.bad || d.i >= len(d.b) {
		d.fail()
		return false
	}
	switch c := d.b[d.i]; {
	case c == closing:
		d.i++
		return false
	case *n == 0:
	case c == ',':
		d.i++
	default:
		d.fail()
		return false
	}
	*n++
	return true
}

// strBytes reads a string without escapes and returns what is between its
// quotes (aliasing the input).
func (d *fastDec) strBytes() []byte {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		d.fail()
		return nil
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			s := d.b[start:j]
			if !ascii && !utf8.Valid(s) {
				// encoding/json turns invalid UTF-8 into U+FFFD.
				d.fail()
				return nil
			}
			d.i = j + 1
			return s
		case c == '\\' || c < 0x20:
			d.fail()
			return nil
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	d.fail()
	return nil
}

// key reads an object's key and the colon after it.
func (d *fastDec) key() []byte {
	k := d.strBytes()
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == ':' {
		d.i++
		return k
	}
	d.fail()
	return nil
}

// seen declines a key that the object has already given (bit is the
// field's).
func (d *fastDec) seen(fields *uint32, bit uint32) {
	if *fields&bit != 0 {
		d.fail()
	}
	*fields |= bit
}

func (d *fastDec) str() string {
	return string(d.strBytes())
}

// number reads a number as JSON's grammar has it and returns its text.
func (d *fastDec) number() []byte {
	d.ws()
	start, b := d.i, d.b
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		d.fail()
		return nil
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.fail()
			return nil
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.fail()
			return nil
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	d.i = i
	return b[start:i]
}

// int reads an integer of at most 18 digits (int64 cannot overflow); a
// fraction or an exponent, which encoding/json refuses for an int field,
// is declined.
func (d *fastDec) int() int64 {
	lit := d.number()
	digits := lit
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		d.fail()
		return 0
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			d.fail()
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	if lit[0] == '-' {
		n = -n
	}
	return n
}

func (d *fastDec) bool() bool {
	d.ws()
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false
	}
	d.fail()
	return false
}

// literal reads a string (quotes included) or a number: what encoding/json
// hands to a field's UnmarshalJSON.
func (d *fastDec) literal() []byte {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '"' {
		start := d.i
		d.strBytes()
		return d.b[start:d.i]
	}
	return d.number()
}

// The fast decoder keeps the amounts and the short strings it has read in
// two small caches, by their text: a log repeats the same prices, payments,
// product names, terms and user ids over and over, and each costs
// allocations to make anew (three for an amount), and memory for as long as
// an aggregate holds it. Both are safe to share: strings are immutable, and
// so is Money (a decimal never changes the big.Int it holds; its arithmetic
// makes new ones). Each cache is a fixed table of slots, a slot chosen by a
// hash of the text and overwritten on a miss, safe for concurrent use.
const (
	amountSlots   = 1 << 12
	stringSlots   = 1 << 12
	maxInternText = 64
)

type cachedAmount struct {
	text string
	m    Money
}

var (
	amounts [amountSlots]atomic.Pointer[cachedAmount]
	strs    [stringSlots]atomic.Pointer[string]
)

// textHash is FNV-1a.
func textHash(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

func (d *fastDec) money(m *Money) {
	lit := d.literal()
	if d.bad {
		return
	}
	slot := &amounts[textHash(lit)%amountSlots]
	if a := slot.Load(); a != nil && a.text == string(lit) {
		*m = a.m
		return
	}
	if err := m.UnmarshalJSON(lit); err != nil {
		d.fail()
		return
	}
	slot.Store(&cachedAmount{string(lit), *m})
}

// istr reads a string that many events repeat (a product's code and name,
// a term, an MSP or a user), from the cache when it is there.
func (d *fastDec) istr() string {
	b := d.strBytes()
	if d.bad || len(b) > maxInternText {
		return string(b)
	}
	slot := &strs[textHash(b)%stringSlots]
	if s := slot.Load(); s != nil && *s == string(b) {
		return *s
	}
	s := string(b)
	slot.Store(&s)
	return s
}

func (d *fastDec) time(t *time.Time) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		d.fail()
		return
	}
	lit := d.literal()
	if d.bad {
		return
	}
	if err := t.UnmarshalJSON(lit); err != nil {
		d.fail()
	}
}

// uuid reads an id as encoding/json does: the string's text handed to
// UnmarshalText.
func (d *fastDec) uuid(u *uuid.UUID) {
	s := d.strBytes()
	if d.bad {
		return
	}
	if err := u.UnmarshalText(s); err != nil {
		d.fail()
	}
}

// list reads an array of T, each with read. An empty array is an empty,
// non-nil slice, as encoding/json makes it.
func list[T any](d *fastDec, read func(*fastDec, *T)) []T {
	d.open('[')
	out := []T{}
	for n := 0; d.more(']', &n); {
		var v T
		read(d, &v)
		out = append(out, v)
	}
	if d.bad {
		return nil
	}
	return out
}

func readLine(d *fastDec, l *Line) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "product_code":
			d.seen(&seen, 1<<0)
			l.ProductCode = d.istr()
		case "product_name":
			d.seen(&seen, 1<<1)
			l.ProductName = d.istr()
		case "term_type":
			d.seen(&seen, 1<<2)
			l.TermType = d.istr()
		case "per_user":
			d.seen(&seen, 1<<3)
			l.PerUser = d.bool()
		case "seats":
			d.seen(&seen, 1<<4)
			l.Seats = int(d.int())
		case "unit_price":
			d.seen(&seen, 1<<5)
			d.money(&l.UnitPrice)
		default:
			d.fail()
		}
	}
}

// orderLineField reads one field of an OrderLine, or reports false for a
// key that is not one (see readSubmittedLine).
func orderLineField(d *fastDec, l *OrderLine, seen *uint32, key []byte) bool {
	switch string(key) {
	case "product_code":
		d.seen(seen, 1<<0)
		l.ProductCode = d.istr()
	case "product":
		d.seen(seen, 1<<1)
		l.Product = d.istr()
	case "term_type":
		d.seen(seen, 1<<2)
		l.TermType = d.istr()
	case "per_user":
		d.seen(seen, 1<<3)
		l.PerUser = d.bool()
	case "prior_quantity":
		d.seen(seen, 1<<4)
		l.PriorQuantity = int(d.int())
	case "current_quantity":
		d.seen(seen, 1<<5)
		l.CurrentQuantity = int(d.int())
	case "prior_unit_price":
		d.seen(seen, 1<<6)
		d.money(&l.PriorUnitPrice)
	case "current_unit_price":
		d.seen(seen, 1<<7)
		d.money(&l.CurrentUnitPrice)
	case "prior_payment":
		d.seen(seen, 1<<8)
		d.money(&l.PriorPayment)
	case "current_payment":
		d.seen(seen, 1<<9)
		d.money(&l.CurrentPayment)
	default:
		return false
	}
	return true
}

func readOrderLine(d *fastDec, l *OrderLine) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		if !orderLineField(d, l, &seen, d.key()) {
			d.fail()
		}
	}
}

// readSubmittedLine reads a line of OrderSubmitted v2 and checks its
// deltas as SubmittedLines.UnmarshalJSON does; a line that fails the check
// is declined, for encoding/json to give the error.
func readSubmittedLine(d *fastDec, l *OrderLine) {
	var seen uint32
	var qty int
	var pay Money
	d.open('{')
	for n := 0; d.more('}', &n); {
		key := d.key()
		if orderLineField(d, l, &seen, key) {
			continue
		}
		switch string(key) {
		case "quantity_change":
			d.seen(&seen, 1<<10)
			qty = int(d.int())
		case "monthly_change":
			d.seen(&seen, 1<<11)
			d.money(&pay)
		default:
			d.fail()
		}
	}
	if seen&(1<<10) == 0 || seen&(1<<11) == 0 || qty != l.QuantityChange() || !pay.Equal(l.MonthlyChange()) {
		d.fail()
	}
}

func readCustomerOnboarded(d *fastDec, e *CustomerOnboarded) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "customer_id":
			d.seen(&seen, 1<<0)
			e.CustomerID = d.str()
		case "msp_id":
			d.seen(&seen, 1<<1)
			e.MSPID = d.istr()
		case "name":
			d.seen(&seen, 1<<2)
			e.Name = d.str()
		case "currency":
			d.seen(&seen, 1<<3)
			e.Currency = d.istr()
		case "lines":
			d.seen(&seen, 1<<4)
			e.Lines = list(d, readLine)
		case "onboarded_at":
			d.seen(&seen, 1<<5)
			d.time(&e.OnboardedAt)
		default:
			d.fail()
		}
	}
}

func readSubscriptionAmended(d *fastDec, e *SubscriptionAmended) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "customer_id":
			d.seen(&seen, 1<<0)
			e.CustomerID = d.str()
		case "quote_id":
			d.seen(&seen, 1<<1)
			d.uuid(&e.QuoteID)
		case "lines":
			d.seen(&seen, 1<<2)
			e.Lines = list(d, readOrderLine)
		case "new_monthly_total":
			d.seen(&seen, 1<<3)
			d.money(&e.NewMonthlyTotal)
		case "amended_at":
			d.seen(&seen, 1<<4)
			d.time(&e.AmendedAt)
		default:
			d.fail()
		}
	}
}

func readChangeQuoteOpened(d *fastDec, e *ChangeQuoteOpened) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "quote_id":
			d.seen(&seen, 1<<0)
			d.uuid(&e.QuoteID)
		case "customer_id":
			d.seen(&seen, 1<<1)
			e.CustomerID = d.str()
		case "customer_name":
			d.seen(&seen, 1<<2)
			e.CustomerName = d.str()
		case "msp_id":
			d.seen(&seen, 1<<3)
			e.MSPID = d.istr()
		case "msp_name":
			d.seen(&seen, 1<<4)
			e.MSPName = d.istr()
		case "currency":
			d.seen(&seen, 1<<5)
			e.Currency = d.istr()
		case "baseline_version":
			d.seen(&seen, 1<<6)
			e.BaselineVersion = d.int()
		case "baseline":
			d.seen(&seen, 1<<7)
			e.Baseline = list(d, readLine)
		case "opened_by":
			d.seen(&seen, 1<<8)
			e.OpenedBy = d.istr()
		case "opened_at":
			d.seen(&seen, 1<<9)
			d.time(&e.OpenedAt)
		default:
			d.fail()
		}
	}
}

func readProductAdded(d *fastDec, e *ProductAdded) {
	readLine(d, (*Line)(e))
}

func readProductRemoved(d *fastDec, e *ProductRemoved) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "product_code":
			d.seen(&seen, 1<<0)
			e.ProductCode = d.istr()
		default:
			d.fail()
		}
	}
}

func readSeatsChanged(d *fastDec, e *SeatsChanged) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "product_code":
			d.seen(&seen, 1<<0)
			e.ProductCode = d.istr()
		case "term_type":
			d.seen(&seen, 1<<1)
			e.TermType = d.istr()
		case "prior_seats":
			d.seen(&seen, 1<<2)
			e.PriorSeats = int(d.int())
		case "previous_seats":
			d.seen(&seen, 1<<3)
			e.PreviousSeats = int(d.int())
		case "new_seats":
			d.seen(&seen, 1<<4)
			e.NewSeats = int(d.int())
		case "unit_price":
			d.seen(&seen, 1<<5)
			d.money(&e.UnitPrice)
		default:
			d.fail()
		}
	}
}

// readTimeOnly reads an object whose one field, name, is a time.
func readTimeOnly(d *fastDec, name string, t *time.Time) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		if string(d.key()) != name {
			d.fail()
			return
		}
		d.seen(&seen, 1)
		d.time(t)
	}
}

func readQuoteSaved(d *fastDec, e *QuoteSaved) { readTimeOnly(d, "saved_at", &e.SavedAt) }

func readQuoteCancelled(d *fastDec, e *QuoteCancelled) {
	readTimeOnly(d, "cancelled_at", &e.CancelledAt)
}

func readOrderReviewed(d *fastDec, e *OrderReviewed) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "lines":
			d.seen(&seen, 1<<0)
			e.Lines = list(d, readOrderLine)
		case "total_users":
			d.seen(&seen, 1<<1)
			e.TotalUsers = int(d.int())
		case "prior_monthly_total":
			d.seen(&seen, 1<<2)
			d.money(&e.PriorMonthlyTotal)
		case "new_monthly_total":
			d.seen(&seen, 1<<3)
			d.money(&e.NewMonthlyTotal)
		case "reviewed_at":
			d.seen(&seen, 1<<4)
			d.time(&e.ReviewedAt)
		default:
			d.fail()
		}
	}
}

func readAcknowledgementsGiven(d *fastDec, e *AcknowledgementsGiven) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "msa_governs_order":
			d.seen(&seen, 1<<0)
			e.MSAGovernsOrder = d.bool()
		case "authorized_to_order":
			d.seen(&seen, 1<<1)
			e.AuthorizedToOrder = d.bool()
		case "by":
			d.seen(&seen, 1<<2)
			e.By = d.istr()
		case "msp_id":
			d.seen(&seen, 1<<3)
			e.MSPID = d.istr()
		case "at":
			d.seen(&seen, 1<<4)
			d.time(&e.At)
		default:
			d.fail()
		}
	}
}

func readOrderSubmitted(d *fastDec, e *OrderSubmitted) {
	var seen uint32
	d.open('{')
	for n := 0; d.more('}', &n); {
		switch string(d.key()) {
		case "customer_id":
			d.seen(&seen, 1<<0)
			e.CustomerID = d.str()
		case "baseline_version":
			d.seen(&seen, 1<<1)
			e.BaselineVersion = d.int()
		case "lines":
			d.seen(&seen, 1<<2)
			e.Lines = list(d, readSubmittedLine)
		case "total_users":
			d.seen(&seen, 1<<3)
			e.TotalUsers = int(d.int())
		case "prior_monthly_total":
			d.seen(&seen, 1<<4)
			d.money(&e.PriorMonthlyTotal)
		case "new_monthly_total":
			d.seen(&seen, 1<<5)
			d.money(&e.NewMonthlyTotal)
		case "monthly_difference":
			d.seen(&seen, 1<<6)
			d.money(&e.MonthlyDifference)
		case "acknowledged_by":
			d.seen(&seen, 1<<7)
			e.AcknowledgedBy = d.istr()
		case "acknowledged_at":
			d.seen(&seen, 1<<8)
			d.time(&e.AcknowledgedAt)
		case "submitted_by":
			d.seen(&seen, 1<<9)
			e.SubmittedBy = d.istr()
		case "submitted_at":
			d.seen(&seen, 1<<10)
			d.time(&e.SubmittedAt)
		default:
			d.fail()
		}
	}
}
