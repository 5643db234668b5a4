package billing

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Print writes an order as billing reads it: one row per line with the
// quantity and monthly amount before, after and the change.
func Print(w io.Writer, o Order) error {
	fmt.Fprintf(w, "order %s  customer %s  submitted %s by %s  (event %s)\n",
		o.QuoteID, o.CustomerID, o.SubmittedAt.UTC().Format(time.RFC3339), o.SubmittedBy, o.EventID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PRODUCT\tTERM\tQUANTITY\tΔ QUANTITY\tΔ MONTHLY")
	for _, l := range o.Lines {
		fmt.Fprintf(tw, "  %s (%s)\t%s\t%d → %d\t%+d\t%s\n", l.Product, l.ProductCode, l.TermType,
			l.PriorQuantity, l.CurrentQuantity, l.QuantityChange, signed(l.MonthlyChange.StringFixed(2)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "  monthly total %s → %s (%s)\n\n", o.PriorMonthlyTotal.StringFixed(2),
		o.NewMonthlyTotal.StringFixed(2), signed(o.MonthlyDifference.StringFixed(2)))
	return err
}

func signed(s string) string {
	if s != "" && s[0] != '-' {
		return "+" + s
	}
	return s
}

// jsonLine is an order as one JSON object per line (--json).
type jsonLine struct {
	EventID           string     `json:"event_id"`
	QuoteID           string     `json:"quote_id"`
	CustomerID        string     `json:"customer_id"`
	SubmittedAt       time.Time  `json:"submitted_at"`
	SubmittedBy       string     `json:"submitted_by"`
	PriorMonthlyTotal string     `json:"prior_monthly_total"`
	NewMonthlyTotal   string     `json:"new_monthly_total"`
	MonthlyDifference string     `json:"monthly_difference"`
	Lines             []jsonItem `json:"lines"`
}

type jsonItem struct {
	ProductCode     string `json:"product_code"`
	Product         string `json:"product"`
	TermType        string `json:"term_type"`
	PriorQuantity   int    `json:"prior_quantity"`
	CurrentQuantity int    `json:"current_quantity"`
	QuantityChange  int    `json:"quantity_change"`
	MonthlyChange   string `json:"monthly_change"`
}

// PrintJSON writes an order as one line of JSON, money as decimal strings.
func PrintJSON(w io.Writer, o Order) error {
	j := jsonLine{EventID: o.EventID, QuoteID: o.QuoteID, CustomerID: o.CustomerID, SubmittedAt: o.SubmittedAt.UTC(),
		SubmittedBy: o.SubmittedBy, PriorMonthlyTotal: o.PriorMonthlyTotal.StringFixed(2),
		NewMonthlyTotal: o.NewMonthlyTotal.StringFixed(2), MonthlyDifference: o.MonthlyDifference.StringFixed(2),
		Lines: []jsonItem{}}
	for _, l := range o.Lines {
		j.Lines = append(j.Lines, jsonItem{l.ProductCode, l.Product, l.TermType, l.PriorQuantity, l.CurrentQuantity,
			l.QuantityChange, l.MonthlyChange.StringFixed(2)})
	}
	return json.NewEncoder(w).Encode(j)
}
