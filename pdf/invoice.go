package pdf

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/shopspring/decimal"
	"golang.org/x/text/unicode/norm"
)

// ErrInvalidInvoice is wrapped by the errors [Render] returns for an
// invoice it refuses to render. Rendering it again cannot succeed, so a
// worker should not retry such a task.
var ErrInvalidInvoice = errors.New("invalid invoice")

// Invoice is everything the document shows. The worker's handler fills it
// from the tenant's database.
type Invoice struct {
	// TenantName is the issuer, printed as the header of every page.
	TenantName string
	// Number identifies the invoice, e.g. "INV-2026-0042". Required.
	Number string
	// IssuedAt is the issue date. Printed as a date (YYYY-MM-DD) in its own
	// location; it is also the document's creation date unless
	// [Renderer.CreatedAt] is set.
	IssuedAt time.Time
	// DueAt is the due date, printed like IssuedAt.
	DueAt time.Time
	// Status is one of draft, sent, paid, overdue or cancelled. It is
	// printed as given.
	Status string
	// Currency is an ISO 4217 code: three uppercase ASCII letters. Required.
	Currency string
	// Customer is the bill-to party.
	Customer Customer
	// Lines are the line items, printed in order.
	Lines []Line
	// Notes is free text printed under the totals; it may span lines.
	Notes string
	// Amount is the total due as the invoice records it. It is printed
	// only for an invoice without lines (as its subtotal and total): with
	// lines the document prints their sum, so that what it shows adds up
	// (see [Subtotal]).
	Amount decimal.NullDecimal
}

// Customer is the party an invoice is billed to. Empty fields are left out.
type Customer struct {
	// Name is the customer's name.
	Name string
	// Company is the customer's company.
	Company string
	// Email is the customer's email address.
	Email string
	// Address is a postal address; it may span lines.
	Address string
}

// Line is one line item of an invoice.
type Line struct {
	// Description says what is billed; long text wraps within its row.
	Description string
	// Quantity is how many units are billed; it may be fractional.
	Quantity decimal.Decimal
	// UnitPrice is the price of one unit in the invoice's currency; a
	// negative price makes a discount line.
	UnitPrice decimal.Decimal
}

// validate reports why inv cannot be rendered, wrapping [ErrInvalidInvoice].
func (inv Invoice) validate() error {
	if strings.TrimSpace(inv.Number) == "" {
		return fmt.Errorf("%w: empty number", ErrInvalidInvoice)
	}
	if !validCurrency(inv.Currency) {
		return fmt.Errorf("%w %s: currency %q is not three uppercase letters", ErrInvalidInvoice, shortNumber(inv.Number), inv.Currency)
	}
	return nil
}

// validCurrency reports whether code has the shape of an ISO 4217 code.
func validCurrency(code string) bool {
	if len(code) != 3 {
		return false
	}
	for i := range len(code) {
		if code[i] < 'A' || code[i] > 'Z' {
			return false
		}
	}
	return true
}

// composed returns inv with every base letter followed by combining marks
// in its composed form (NFC): decomposed text ("e" + U+0308) then prints
// with the fonts' precomposed letters, which they have, instead of
// combining marks, which they lack. Text without combining marks is kept
// as it is (NFC would also turn U+2126 OHM SIGN into U+03A9, for instance).
func (inv Invoice) composed() Invoice {
	for _, s := range []*string{&inv.TenantName, &inv.Number, &inv.Status, &inv.Notes,
		&inv.Customer.Name, &inv.Customer.Company, &inv.Customer.Email, &inv.Customer.Address} {
		*s = composeMarks(*s)
	}
	for i, l := range inv.Lines {
		if c := composeMarks(l.Description); c != l.Description {
			inv.Lines = slices.Clone(inv.Lines) // the caller's lines stay as they are
			inv.Lines[i].Description = c
			for j := i + 1; j < len(inv.Lines); j++ {
				inv.Lines[j].Description = composeMarks(inv.Lines[j].Description)
			}
			break
		}
	}
	return inv
}

// composeMarks returns s with each of its segments (a character and the
// combining marks after it) that holds a nonspacing mark in NFC.
func composeMarks(s string) string {
	if printableASCII(s) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		n := norm.NFC.NextBoundaryInString(s, true)
		if n <= 0 {
			n = len(s)
		}
		seg := s[:n]
		s = s[n:]
		if strings.IndexFunc(seg, func(r rune) bool { return unicode.Is(unicode.Mn, r) }) >= 0 {
			if c := norm.NFC.String(seg); c != seg {
				b.WriteString(c)
				continue
			}
		}
		b.WriteString(seg)
	}
	return b.String()
}
