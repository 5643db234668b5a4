// Package loadgen drives a running Upsell server over HTTP the way MSP staff
// do, and measures it: N virtual users, each working only on its own
// customers, open change quotes, raise seats, add products, preview, save,
// review, acknowledge and submit. It reports throughput per request kind,
// p50/p95/p99/max latency and the answers other than 2xx.
//
// Its data is its own: Generate makes an import file (importer's format)
// with one MSP per seed (ids "lg-<seed>…"), one user and API key per
// virtual user, a small catalog of "LG-…" products and the customers, split
// among the users. Everything is a function of the seed and the customer's
// index, so importing it again (the same seed, more or fewer customers or
// users) re-uses what is there. The API keys are derived from the seed, so
// anyone who knows it can compute them: never load a production database.
package loadgen

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"

	"github.com/upsell-dev/upsell/importer"
)

// Data is a generated import file and, per virtual user, its key and its
// customers.
type Data struct {
	Seed  uint64
	MSPID string
	File  *importer.File
	Users []User
	// Catalog is the generated products by code.
	Catalog map[string]importer.Product
}

// User is a virtual user: an MSP user with its API key and the customers it
// alone works on.
type User struct {
	ID        string
	Key       string
	Customers []string
}

// MaxCustomers and MaxUsers bound what Generate makes.
const (
	MaxCustomers = 1_000_000
	MaxUsers     = 10_000
)

// MSPID is the id of the MSP that the data of seed belongs to.
func MSPID(seed uint64) string { return fmt.Sprintf("lg-%d", seed) }

// Products is loadgen's catalog: products of its own (codes "LG-…"), so
// that its imports never change the catalog the demo data or a real
// deployment uses. Prices follow the fixture's.
func Products() []importer.Product {
	t := func(term string, minSeats int, price string) importer.Tier {
		return importer.Tier{TermType: term, MinSeats: minSeats, UnitPrice: price}
	}
	return []importer.Product{
		{Code: "LG-EMAIL-SEC", Name: "Email Security Cloud Gateway (load test)", PerUser: true, Currency: "USD",
			TermTypes: []string{"Monthly", "12 Month", "36 Month"},
			Tiers: []importer.Tier{t("Monthly", 1, "3.90"), t("Monthly", 500, "3.60"),
				t("12 Month", 1, "3.50"), t("12 Month", 500, "3.25"), t("12 Month", 700, "3.20"),
				t("36 Month", 1, "3.15"), t("36 Month", 500, "2.95")}},
		{Code: "LG-ARCHIVE", Name: "Cloud Archive (load test)", PerUser: true, Currency: "USD",
			TermTypes: []string{"12 Month", "36 Month"},
			Tiers:     []importer.Tier{t("12 Month", 1, "1.80"), t("12 Month", 250, "1.65"), t("36 Month", 1, "1.55")}},
		{Code: "LG-AWARENESS", Name: "Security Awareness Training (load test)", PerUser: true, Currency: "USD",
			TermTypes: []string{"12 Month"},
			Tiers:     []importer.Tier{t("12 Month", 1, "1.25"), t("12 Month", 1000, "0.99")}},
		{Code: "LG-DMARC", Name: "DMARC Analyzer, per domain (load test)", PerUser: false, Currency: "USD",
			TermTypes: []string{"12 Month"},
			Tiers:     []importer.Tier{t("12 Month", 1, "45.00")}},
		{Code: "LG-BACKUP", Name: "Cloud Backup for Microsoft 365 (load test)", PerUser: true, Currency: "USD",
			TermTypes: []string{"12 Month", "36 Month"},
			Tiers:     []importer.Tier{t("12 Month", 1, "2.50"), t("12 Month", 100, "2.30"), t("12 Month", 1000, "2.10"), t("36 Month", 1, "2.20")}},
		{Code: "LG-EDR", Name: "Endpoint Detection and Response (load test)", PerUser: true, Currency: "USD",
			TermTypes: []string{"12 Month"},
			Tiers:     []importer.Tier{t("12 Month", 1, "4.75"), t("12 Month", 250, "4.40"), t("12 Month", 1000, "4.10")}},
		{Code: "LG-MFA", Name: "Multi-Factor Authentication (load test)", PerUser: true, Currency: "USD",
			TermTypes: []string{"Monthly", "12 Month"},
			Tiers:     []importer.Tier{t("Monthly", 1, "1.10"), t("12 Month", 1, "0.95"), t("12 Month", 500, "0.85")}},
		{Code: "LG-SIEM", Name: "Managed SIEM, per tenant (load test)", PerUser: false, Currency: "USD",
			TermTypes: []string{"12 Month"},
			Tiers:     []importer.Tier{t("12 Month", 1, "120.00")}},
	}
}

// Generate makes the data of seed: customers customers split among users
// users (user j, from 0, has the customers i with i % users == j). It
// refuses counts out of range, and fewer customers than users.
func Generate(seed uint64, customers, users int) (*Data, error) {
	switch {
	case users < 1 || users > MaxUsers:
		return nil, fmt.Errorf("users must be between 1 and %d, got %d", MaxUsers, users)
	case customers < users || customers > MaxCustomers:
		return nil, fmt.Errorf("customers must be between the number of users (%d) and %d, got %d: each user works on customers of its own", users, MaxCustomers, customers)
	}
	products := Products()
	d := &Data{Seed: seed, MSPID: MSPID(seed), Catalog: map[string]importer.Product{}}
	for _, p := range products {
		d.Catalog[p.Code] = p
	}
	msp := importer.MSP{ID: d.MSPID, Name: fmt.Sprintf("Load Generator MSP (seed %d)", seed)}
	for j := range users {
		id := fmt.Sprintf("%s-u%04d", d.MSPID, j+1)
		sum := sha256.Sum256(fmt.Appendf(nil, "upsell loadgen key %d %d", seed, j+1))
		u := User{ID: id, Key: id + "-" + hex.EncodeToString(sum[:8])}
		msp.Users = append(msp.Users, importer.User{ID: u.ID, Name: fmt.Sprintf("Load User %d", j+1), APIKey: u.Key})
		d.Users = append(d.Users, u)
	}
	f := &importer.File{MSPs: []importer.MSP{msp}, Products: products}
	for i := range customers {
		c := customer(seed, d.MSPID, i, products)
		f.Customers = append(f.Customers, c)
		u := &d.Users[i%users]
		u.Customers = append(u.Customers, c.ID)
	}
	d.File = f
	return d, nil
}

// CustomerID is the id of the customer of index i (from 0) of seed's data.
func CustomerID(seed uint64, i int) string { return fmt.Sprintf("%s-c%06d", MSPID(seed), i+1) }

var (
	nameFirst = []string{"Harbor", "Summit", "Cedar", "Northgate", "Bluewater", "Ironwood", "Riverside", "Oakridge",
		"Lakeshore", "Granite", "Maple", "Silverline", "Westfield", "Pinecrest", "Redstone", "Brightpath"}
	nameSecond = []string{"Dental", "Logistics", "Legal", "Engineering", "Accounting", "Health", "Realty", "Foods",
		"Motors", "Design", "Consulting", "Insurance", "Printing", "Robotics", "Travel", "Pharmacy"}
	nameSuffix = []string{"Ltd", "Inc", "LLC", "Group", "Partners", "Co"}
)

// customer makes customer i of seed: a function of the two alone (integer
// arithmetic on PCG's specified output, so every platform and Go release
// makes the same one), which keeps re-imports unchanged.
func customer(seed uint64, mspID string, i int, products []importer.Product) importer.Customer {
	src := rand.NewPCG(seed, uint64(i))
	pick := func(n int) int { return int(src.Uint64() % uint64(n)) }
	name := fmt.Sprintf("%s %s %s %06d", nameFirst[pick(len(nameFirst))], nameSecond[pick(len(nameSecond))], nameSuffix[pick(len(nameSuffix))], i+1)
	// Sizes from a handful of users to a few thousand.
	var users int
	switch pick(4) {
	case 0:
		users = 5 + pick(45)
	case 1:
		users = 50 + pick(200)
	case 2:
		users = 250 + pick(750)
	default:
		users = 1000 + pick(2000)
	}
	// One to three products, in catalog order.
	n := 1 + pick(3)
	order := make([]int, len(products))
	for k := range order {
		order[k] = k
	}
	for k := len(order) - 1; k > 0; k-- { // Fisher-Yates
		r := pick(k + 1)
		order[k], order[r] = order[r], order[k]
	}
	chosen := order[:n]
	for a := 1; a < len(chosen); a++ { // insertion sort: catalog order
		for b := a; b > 0 && chosen[b] < chosen[b-1]; b-- {
			chosen[b], chosen[b-1] = chosen[b-1], chosen[b]
		}
	}
	c := importer.Customer{ID: CustomerID(seed, i), MSPID: mspID, Name: name}
	for _, k := range chosen {
		p := products[k]
		seats := users
		if !p.PerUser {
			seats = 1 + pick(3)
		}
		term := p.TermTypes[pick(len(p.TermTypes))]
		c.Subscriptions = append(c.Subscriptions, importer.Subscription{
			ProductCode: p.Code, TermType: term, Seats: seats, UnitPrice: tierPrice(p, term, seats),
		})
	}
	return c
}

// tierPrice is the catalog's price of seats seats on term: the tier with
// the most minimum seats that seats reach.
func tierPrice(p importer.Product, term string, seats int) string {
	best, price := 0, ""
	for _, t := range p.Tiers {
		if t.TermType == term && t.MinSeats <= seats && t.MinSeats > best {
			best, price = t.MinSeats, t.UnitPrice
		}
	}
	return price
}
