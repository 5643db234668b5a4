// Package importer loads the import file: MSPs with their users and API
// keys, the product catalog, and customers with their current
// subscriptions. MSPs, users and products are reference rows; each customer
// becomes a stream that starts with CustomerOnboarded.
//
// An import is all or nothing: the whole file is checked first, every
// problem reported with the place it is at (customers[0].subscriptions[1]
// .seats), then everything is written in one transaction. Importing the same
// file twice changes nothing.
package importer

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upsell-dev/upsell/domain"
)

// File is the import format (see fixtures/import-example.json).
type File struct {
	MSPs      []MSP      `json:"msps"`
	Products  []Product  `json:"products"`
	Customers []Customer `json:"customers"`
}

// MSP is a managed service provider with its portal users.
type MSP struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Users []User `json:"users"`
}

// User is an MSP user with the API key the portal calls with.
type User struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	APIKey string `json:"api_key"`
}

// Product is a catalog entry; prices are decimal strings.
type Product struct {
	Code      string   `json:"code"`
	Name      string   `json:"name"`
	PerUser   bool     `json:"per_user"`
	Currency  string   `json:"currency"`
	TermTypes []string `json:"term_types"`
	Tiers     []Tier   `json:"tiers"`
}

// Tier is a volume tier of a product.
type Tier struct {
	TermType  string `json:"term_type"`
	MinSeats  int    `json:"min_seats"`
	UnitPrice string `json:"unit_price"`
}

// Customer is a customer of an MSP with its current subscription.
type Customer struct {
	ID    string `json:"id"`
	MSPID string `json:"msp_id"`
	Name  string `json:"name"`
	// Currency is optional: it is the currency of the subscription's
	// products, and must be given for a customer with no subscription yet.
	Currency      string         `json:"currency,omitempty"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// Subscription is one line of a customer's current subscription.
type Subscription struct {
	ProductCode string `json:"product_code"`
	TermType    string `json:"term_type"`
	Seats       int    `json:"seats"`
	UnitPrice   string `json:"unit_price"`
}

// MinAPIKeyLength refuses keys short enough to guess.
const MinAPIKeyLength = 10

// Problem is one thing wrong with an import file, at a place in it.
type Problem struct {
	Path    string // e.g. customers[0].subscriptions[1].seats; empty for the whole file
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// InvalidFileError lists everything wrong with a file. Nothing of such a
// file is written.
type InvalidFileError struct {
	Problems []Problem
}

func (e *InvalidFileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the import file has %d problem(s); nothing was imported", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Parse reads an import file strictly: unknown fields, trailing data and
// wrong types are refused with their line and column.
func Parse(r io.Reader) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read import file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, &InvalidFileError{Problems: []Problem{jsonProblem(data, err)}}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		rest := bytes.TrimLeft(data[end:], " \t\r\n")
		line, col := position(data, int64(len(data)-len(rest)))
		return nil, &InvalidFileError{Problems: []Problem{{Message: fmt.Sprintf("line %d, column %d: unexpected data after the top-level object", line, col)}}}
	}
	// PostgreSQL text cannot hold NUL: refuse it here, with its place, not
	// halfway through the import.
	if bytes.Contains(data, []byte(`\u0000`)) {
		if p, found := nulString(data); found {
			line, col := position(data, p.offset)
			return nil, &InvalidFileError{Problems: []Problem{{Path: p.path, Message: fmt.Sprintf("line %d, column %d: text must not contain NUL (\\u0000)", line, col)}}}
		}
	}
	return &f, nil
}

func jsonProblem(data []byte, err error) Problem {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, max(syn.Offset-1, 0)) // Offset is just past the bad byte
		return Problem{Message: fmt.Sprintf("line %d, column %d: malformed JSON: %v", line, col, syn)}
	case errors.As(err, &typ):
		at := place{path: typ.Field, offset: typ.Offset}
		if p, ok := valueAt(data, typ.Offset); ok {
			at = p
		}
		line, col := position(data, at.offset)
		return Problem{Path: at.path, Message: fmt.Sprintf("line %d, column %d: expected %s, found a JSON %s", line, col, typ.Type, typ.Value)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Problem{Message: "malformed JSON: the file ends before the top-level object does"}
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		// encoding/json gives no place here: walk the file for it.
		name, _ := strconv.Unquote(field)
		p, found := unknownField(data)
		if !found {
			return Problem{Message: fmt.Sprintf("unknown field %q", name)}
		}
		line, col := position(data, p.offset)
		return Problem{Path: p.path, Message: fmt.Sprintf("line %d, column %d: unknown field %q", line, col, name)}
	}
	return Problem{Message: err.Error()}
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// HashAPIKey is how keys are stored and looked up: SHA-256. Keys are long
// random tokens, so a fast hash is safe, and the lookup stays one index probe.
func HashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// checked is a file that passed validation, in domain terms.
type checked struct {
	msps      []MSP
	products  []domain.Product
	customers []checkedCustomer
}

type checkedCustomer struct {
	path     string
	customer Customer
	currency string
	lines    []domain.Line
}

// known is what the database already has, for references the file makes
// to MSPs and products it does not itself contain.
type known struct {
	mspIDs   map[string]bool
	products map[string]domain.Product
	keys     map[userRef]string // each user's API key hash, as a string
}

type userRef struct{ msp, user string }

// validate checks everything and converts the file, or lists every problem.
func validate(f *File, db known) (*checked, error) {
	var probs []Problem
	add := func(path, format string, args ...any) {
		probs = append(probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	out := &checked{msps: f.MSPs}

	mspIDs := map[string]bool{}
	for id := range db.mspIDs {
		mspIDs[id] = true
	}
	seenMSP := map[string]string{}
	seenKey := map[string]string{}
	for i, m := range f.MSPs {
		p := fmt.Sprintf("msps[%d]", i)
		switch {
		case strings.TrimSpace(m.ID) == "":
			add(p+".id", "is empty")
		case seenMSP[m.ID] != "":
			add(p+".id", "duplicate id %q (also at %s)", m.ID, seenMSP[m.ID])
		default:
			seenMSP[m.ID] = p
			mspIDs[m.ID] = true
		}
		if strings.TrimSpace(m.Name) == "" {
			add(p+".name", "is empty")
		}
		seenUser := map[string]string{}
		for j, u := range m.Users {
			up := fmt.Sprintf("%s.users[%d]", p, j)
			switch {
			case strings.TrimSpace(u.ID) == "":
				add(up+".id", "is empty")
			case seenUser[u.ID] != "":
				add(up+".id", "duplicate user id %q (also at %s)", u.ID, seenUser[u.ID])
			default:
				seenUser[u.ID] = up
			}
			if strings.TrimSpace(u.Name) == "" {
				add(up+".name", "is empty")
			}
			switch {
			case len(u.APIKey) < MinAPIKeyLength:
				add(up+".api_key", "must be at least %d characters", MinAPIKeyLength)
			case seenKey[u.APIKey] != "":
				add(up+".api_key", "the same key is given to %s", seenKey[u.APIKey])
			default:
				seenKey[u.APIKey] = up
			}
		}
	}
	probs = append(probs, keyClashes(f, db.keys)...)

	products := map[string]domain.Product{}
	for code, p := range db.products {
		products[code] = p
	}
	seenProduct := map[string]string{}
	invalidProduct := map[string]bool{}
	for i, fp := range f.Products {
		p := fmt.Sprintf("products[%d]", i)
		if seenProduct[fp.Code] != "" {
			add(p+".code", "duplicate product code %q (also at %s)", fp.Code, seenProduct[fp.Code])
			continue
		}
		seenProduct[fp.Code] = p
		dp := domain.Product{Code: fp.Code, Name: fp.Name, PerUser: fp.PerUser, Currency: fp.Currency, TermTypes: fp.TermTypes}
		bad := false
		for j, t := range fp.Tiers {
			price, err := domain.ParseMoney(t.UnitPrice)
			if err != nil {
				add(fmt.Sprintf("%s.tiers[%d].unit_price", p, j), "%v", err)
				bad = true
			}
			dp.Tiers = append(dp.Tiers, domain.Tier{TermType: t.TermType, MinSeats: t.MinSeats, UnitPrice: price})
		}
		if bad {
			invalidProduct[fp.Code] = true
			continue
		}
		norm, err := dp.Validate()
		if err != nil {
			add(domainPath(p, err), "%s", domainDetail(err))
			invalidProduct[fp.Code] = true
			continue
		}
		if old, ok := db.products[fp.Code]; ok && old.Currency != norm.Currency {
			// Subscriptions and open quotes are priced in the old currency.
			add(p+".currency", "%s is already priced in %s; a product's currency cannot change", fp.Code, old.Currency)
			invalidProduct[fp.Code] = true
			continue
		}
		products[fp.Code] = norm
		out.products = append(out.products, norm)
	}

	seenCustomer := map[string]string{}
	for i, c := range f.Customers {
		p := fmt.Sprintf("customers[%d]", i)
		if seenCustomer[c.ID] != "" && c.ID != "" {
			add(p+".id", "duplicate customer id %q (also at %s)", c.ID, seenCustomer[c.ID])
			continue
		}
		seenCustomer[c.ID] = p
		if c.MSPID != "" && !mspIDs[c.MSPID] {
			add(p+".msp_id", "unknown MSP %q: it is neither in this file nor imported before", c.MSPID)
		}
		cc := checkedCustomer{path: p, customer: c, currency: c.Currency}
		bad := false
		for j, s := range c.Subscriptions {
			sp := fmt.Sprintf("%s.subscriptions[%d]", p, j)
			prod, ok := products[s.ProductCode]
			if invalidProduct[s.ProductCode] {
				bad = true // its own problems are listed where it is defined
				continue
			}
			if !ok {
				add(sp+".product_code", "unknown product %q: it is neither in this file's catalog nor imported before", s.ProductCode)
				bad = true
				continue
			}
			if !slices.Contains(prod.TermTypes, s.TermType) {
				add(sp+".term_type", "%s is not offered on the term %q (offered: %s)", s.ProductCode, s.TermType, strings.Join(prod.TermTypes, ", "))
				bad = true
			}
			if cc.currency == "" {
				cc.currency = prod.Currency
			} else if prod.Currency != cc.currency {
				add(sp+".product_code", "%s is priced in %s, the customer pays in %s", s.ProductCode, prod.Currency, cc.currency)
				bad = true
			}
			price, err := domain.ParseMoney(s.UnitPrice)
			if err != nil {
				add(sp+".unit_price", "%v", err)
				bad = true
			}
			cc.lines = append(cc.lines, domain.Line{
				ProductCode: s.ProductCode, ProductName: prod.Name, TermType: s.TermType,
				PerUser: prod.PerUser, Seats: s.Seats, UnitPrice: price,
			})
		}
		if cc.currency == "" {
			add(p+".currency", "a customer with no subscription needs its currency")
			bad = true
		}
		if bad {
			continue
		}
		// The domain checks the rest (ids, names, seats, prices, duplicates)
		// and names the field.
		if _, err := domain.OnboardCustomer(c.ID, c.MSPID, c.Name, cc.currency, cc.lines, time.Time{}); err != nil {
			add(domainPath(p, err), "%s", domainDetail(err))
			continue
		}
		out.customers = append(out.customers, cc)
	}
	if len(probs) > 0 {
		return nil, &InvalidFileError{Problems: probs}
	}
	return out, nil
}

func domainPath(prefix string, err error) string {
	var de *domain.Error
	if errors.As(err, &de) && de.Field != "" {
		return prefix + "." + de.Field
	}
	return prefix
}

func domainDetail(err error) string {
	var de *domain.Error
	if errors.As(err, &de) {
		return de.Detail
	}
	return err.Error()
}

// keyClashes finds keys that would belong to two users once the file is
// imported: a file user given a key that a user already in the database
// keeps. Keys moved between users within the file are fine.
func keyClashes(f *File, dbKeys map[userRef]string) []Problem {
	final := make(map[userRef]string, len(dbKeys))
	for u, h := range dbKeys {
		final[u] = h
	}
	paths := map[userRef]string{}
	for i, m := range f.MSPs {
		for j, u := range m.Users {
			ref := userRef{m.ID, u.ID}
			final[ref] = string(HashAPIKey(u.APIKey))
			paths[ref] = fmt.Sprintf("msps[%d].users[%d].api_key", i, j)
		}
	}
	holders := map[string][]userRef{}
	for ref, h := range final {
		holders[h] = append(holders[h], ref)
	}
	var probs []Problem
	for _, refs := range holders {
		if len(refs) < 2 {
			continue
		}
		for _, ref := range refs {
			path, inFile := paths[ref]
			if !inFile {
				continue
			}
			for _, other := range refs {
				if _, otherInFile := paths[other]; !otherInFile {
					probs = append(probs, Problem{Path: path, Message: fmt.Sprintf(
						"the key of user %q of MSP %q already belongs to user %q of MSP %q", ref.user, ref.msp, other.user, other.msp)})
				}
			}
		}
	}
	slices.SortFunc(probs, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	return probs
}
