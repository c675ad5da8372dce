package pdf

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
//
// It reads every character of the invoice, however many more than the
// page limit can print, so it checks ctx as it goes (every
// composeCheckBytes of text) and returns ctx's error once it is done.
func (inv Invoice) composed(ctx context.Context) (Invoice, error) {
	c := composer{ctx: ctx}
	for _, s := range []*string{&inv.TenantName, &inv.Number, &inv.Status, &inv.Notes,
		&inv.Customer.Name, &inv.Customer.Company, &inv.Customer.Email, &inv.Customer.Address} {
		*s = c.marks(*s)
	}
	cloned := false
	for i, l := range inv.Lines {
		if c.err != nil {
			break
		}
		if d := c.marks(l.Description); d != l.Description {
			if !cloned {
				inv.Lines = slices.Clone(inv.Lines) // the caller's lines stay as they are
				cloned = true
			}
			inv.Lines[i].Description = d
		}
	}
	return inv, c.err
}

// composeCheckBytes is how much text composer reads between two checks
// of its context: some milliseconds of work.
const composeCheckBytes = 64 << 10

// composer composes the texts of one invoice (composer.marks), checking
// ctx every composeCheckBytes; once ctx is done it keeps its error and
// leaves the remaining texts as they are.
type composer struct {
	ctx  context.Context
	read int // bytes read since the last check
	err  error
}

// check adds n bytes read and checks ctx when composeCheckBytes have been
// read since the last check; it reports whether to go on.
func (c *composer) check(n int) bool {
	if c.err != nil {
		return false
	}
	if c.read += n; c.read >= composeCheckBytes {
		c.read = 0
		c.err = c.ctx.Err()
	}
	return c.err == nil
}

// marks returns s with each of its segments (a character and the
// combining marks after it) that holds a nonspacing mark in NFC; s itself
// when it has none, or once c's context is done (the render then stops).
func (c *composer) marks(s string) string {
	if !c.check(0) || !c.hasNonspacingMark(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	var it norm.Iter // one for every segment: AppendString allocates for each
	for rest := s; len(rest) > 0; {
		n := norm.NFC.NextBoundaryInString(rest, true)
		if n <= 0 {
			n = len(rest)
		}
		seg := rest[:n]
		rest = rest[n:]
		if strings.IndexFunc(seg, func(r rune) bool { return unicode.Is(unicode.Mn, r) }) >= 0 {
			for it.InitString(norm.NFC, seg); !it.Done(); {
				b = append(b, it.Next()...)
			}
		} else {
			b = append(b, seg...)
		}
		if !c.check(n) {
			return s
		}
	}
	return string(b)
}

// hasNonspacingMark reports whether s holds a nonspacing mark (Unicode's
// Mn, all at U+0300 or above), reading it under c's checks: most text
// has none, and needs no composing at all.
func (c *composer) hasNonspacingMark(s string) bool {
	for len(s) > 0 {
		end := min(len(s), composeCheckBytes)
		// A chunk ends between characters (of valid UTF-8: invalid bytes
		// read as U+FFFD whatever the chunk).
		for k := 1; k < utf8.UTFMax && end < len(s) && !utf8.RuneStart(s[end]); k++ {
			end++
		}
		for _, r := range s[:end] {
			if r >= 0x300 && unicode.Is(unicode.Mn, r) {
				return true
			}
		}
		if !c.check(end) {
			return false
		}
		s = s[end:]
	}
	return false
}
