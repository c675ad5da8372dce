package pdf

import (
	"fmt"
	"io"
	"time"

	"github.com/go-pdf/fpdf"
)

// fallbackCreatedAt is the creation date of a document whose invoice has no
// issue date and whose [Renderer] sets none: never the current time, so
// that the output stays deterministic.
var fallbackCreatedAt = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// Renderer renders invoices to PDF. Its zero value is ready to use; a
// Renderer holds no state between renders and is safe for concurrent use.
type Renderer struct {
	// CreatedAt is written as the document's creation and modification
	// date (in UTC). Zero means the invoice's IssuedAt, or 2000-01-01 UTC
	// when that is zero as well; the current time is never used, so the
	// same invoice always renders to the same bytes.
	CreatedAt time.Time
}

// Render renders inv with a zero [Renderer]. See [Renderer.Render].
func Render(w io.Writer, inv Invoice) error {
	return Renderer{}.Render(w, inv)
}

// Render validates inv, renders it and writes the PDF to w. An invoice
// with an empty number or a currency that is not three uppercase letters
// is refused with an error wrapping [ErrInvalidInvoice]; nothing is
// written then. Errors of fpdf and of w are returned wrapped.
func (r Renderer) Render(w io.Writer, inv Invoice) error {
	if err := inv.validate(); err != nil {
		return fmt.Errorf("render invoice: %w", err)
	}
	return output(w, r.newPDF(inv), inv)
}

// output lays inv out on f, a new document with the fonts registered, and
// writes it to w unless fpdf reported an error.
func output(w io.Writer, f *fpdf.Fpdf, inv Invoice) error {
	newDocument(f, inv).render()
	if err := f.Error(); err != nil {
		return fmt.Errorf("render invoice %s: %w", inv.Number, err)
	}
	if err := f.Output(w); err != nil {
		return fmt.Errorf("write invoice %s pdf: %w", inv.Number, err)
	}
	return nil
}

// newPDF returns an empty A4 document with the embedded fonts registered
// and every setting that decides the output bytes fixed, so that nothing
// depends on fpdf's package-wide defaults or on the clock.
func (r Renderer) newPDF(inv Invoice) *fpdf.Fpdf {
	created := r.CreatedAt
	if created.IsZero() {
		created = inv.IssuedAt
	}
	if created.IsZero() {
		created = fallbackCreatedAt
	}
	created = created.UTC()

	f := fpdf.New("P", "mm", "A4", "")
	f.SetCreationDate(created)
	f.SetModificationDate(created)
	f.SetCatalogSort(true) // fonts are kept in a map: write them in sorted order
	f.SetCompression(true)
	f.SetProducer("tenantworker pdf", false)
	f.SetTitle(cleanText("Invoice "+inv.Number, false), true)
	f.SetAuthor(cleanText(inv.TenantName, false), true)
	f.AliasNbPages(pageCountAlias)
	registerFonts(f)
	return f
}
