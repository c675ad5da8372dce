package pdf

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/go-pdf/fpdf"
)

// Limits a zero [Renderer] applies.
const (
	// DefaultMaxLines is the most line items an invoice may have.
	DefaultMaxLines = 5000
	// DefaultMaxBytes is the largest document, in bytes, Render writes.
	DefaultMaxBytes = 16 << 20
	// DefaultMaxPages is the most pages a document may have. The largest
	// invoice measured, 5,000 lines (DefaultMaxLines) of 2 KB
	// descriptions of wide letters, takes 6,633 pages on every font path.
	DefaultMaxPages = 10000
	// DefaultMaxLineBytes is the most bytes an invoice's line item
	// descriptions may add up to: above the largest invoice measured
	// (5,000 lines of 2 KB descriptions, 10 MB), and a bound on the memory
	// a worker spends loading one invoice's lines.
	DefaultMaxLineBytes = 16 << 20
)

// ErrTooLarge is wrapped by the errors [Render] returns for an invoice
// with more lines than [Renderer.MaxLines], line descriptions of more
// bytes than [Renderer.MaxLineBytes], or whose document would have
// more pages than [Renderer.MaxPages] or be larger than
// [Renderer.MaxBytes]. It wraps [ErrInvalidInvoice]: rendering the
// invoice again cannot succeed.
var ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalidInvoice)

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
	// MaxLines is the most line items an invoice may have; one with more
	// is refused with [ErrTooLarge] before any work. Zero (or less) means
	// [DefaultMaxLines].
	MaxLines int
	// MaxBytes is the largest document, in bytes, Render writes; a larger
	// one is refused with [ErrTooLarge] and nothing is written. Zero (or
	// less) means [DefaultMaxBytes].
	MaxBytes int64
	// MaxPages is the most pages a document may have: the layout stops
	// when it would start the next one, and Render refuses the invoice
	// with [ErrTooLarge] and writes nothing. fpdf keeps every page in
	// memory until it writes the document, so this bounds the memory of a
	// render whose text is short lines in bulk (an address of a million
	// lines), which MaxBytes, checked once the layout is done, does not.
	// Zero (or less) means [DefaultMaxPages].
	MaxPages int
	// MaxLineBytes is the most bytes the descriptions of an invoice's line
	// items may add up to; one with more is refused with [ErrTooLarge]
	// before any work. Zero (or less) means [DefaultMaxLineBytes].
	MaxLineBytes int64
}

// Result describes a rendered document.
type Result struct {
	// FontPath names how the text was encoded: one of [FontPathCP1252],
	// [FontPathCP1250], [FontPathUTF8] and [FontPathUTF8CID]. It follows
	// the characters of the invoice.
	FontPath FontPath
	// Pages is the number of pages.
	Pages int
	// Bytes is the size of the document written.
	Bytes int64
	// Missing lists, in order, the characters of the invoice the embedded
	// fonts have no glyph for (Chinese, Japanese, Arabic or Hebrew text,
	// for instance): the document draws each as an empty box, though its
	// text still extracts as written; one outside the Basic Multilingual
	// Plane (an emoji, an ideograph such as U+20BB7), which no font path
	// carries, prints and extracts as U+FFFD. At most
	// [MaxReportedMissing] are listed; MissingCount counts them all.
	Missing      []rune
	MissingCount int
}

// MaxReportedMissing is the most characters [Result.Missing] lists.
const MaxReportedMissing = 20

// Render renders inv with a zero [Renderer]. See [Renderer.Render].
func Render(ctx context.Context, w io.Writer, inv Invoice) (Result, error) {
	return Renderer{}.Render(ctx, w, inv)
}

// Render validates inv, renders it and writes the PDF to w in one Write.
//
// An invoice with an empty number or a currency that is not three
// uppercase letters is refused with an error wrapping [ErrInvalidInvoice],
// one over the limits with an error wrapping [ErrTooLarge]. Render checks
// ctx as it reads the invoice's text, before the layout and as the
// layout encodes each text (text of any length: every character is read,
// however few of them the page limit lets it print), and between pages and, once ctx is done, stops and returns an error
// wrapping ctx.Err(); it stops as well, with [ErrTooLarge], when the
// document would need more pages than the limit. Errors of fpdf and of w are returned wrapped. On
// any error but w's, nothing is written. With an error the Result holds
// what the render got to: the font path, once the text has been read and
// the path chosen (an invoice refused by validation or the limit on
// lines, or a ctx done before the choice, gets an empty Result).
func (r Renderer) Render(ctx context.Context, w io.Writer, inv Invoice) (Result, error) {
	if err := inv.validate(); err != nil {
		return Result{}, fmt.Errorf("render invoice: %w", err)
	}
	if err := r.CheckLines(inv.Number, len(inv.Lines)); err != nil {
		return Result{}, err
	}
	var lineBytes int64
	for _, l := range inv.Lines {
		lineBytes += int64(len(l.Description))
	}
	if err := r.CheckLineBytes(inv.Number, lineBytes); err != nil {
		return Result{}, err
	}
	maxBytes := r.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	maxPages := r.MaxPages
	if maxPages <= 0 {
		maxPages = DefaultMaxPages
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("render invoice %s: %w", shortNumber(inv.Number), err)
	}

	inv, err := inv.composed(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("render invoice %s: %w", shortNumber(inv.Number), err)
	}
	enc, used, replaced, err := chooseEncoding(ctx, inv)
	if err != nil {
		return Result{}, fmt.Errorf("render invoice %s: %w", shortNumber(inv.Number), err)
	}
	f := r.newPDF(inv)
	fonts, err := addFonts(f, enc, used)
	defer fonts.release()
	if err != nil {
		return Result{}, fmt.Errorf("render invoice %s: fonts: %w", shortNumber(inv.Number), err)
	}
	size, err := output(ctx, w, f, inv, enc, fonts, maxBytes, maxPages)
	res := Result{FontPath: enc.path, Pages: f.PageNo(), Bytes: size}
	res.Missing, res.MissingCount = missingGlyphs(used, replaced)
	return res, err
}

// MaxLinesOrDefault is r's MaxLines, or [DefaultMaxLines] when that is
// zero or less: the most line items an invoice r renders may have.
func (r Renderer) MaxLinesOrDefault() int {
	if r.MaxLines <= 0 {
		return DefaultMaxLines
	}
	return r.MaxLines
}

// CheckLines returns the error [Renderer.Render] returns for an invoice
// numbered number with n line items when n is over the line limit
// (wrapping [ErrTooLarge]), else nil: a caller that counted an invoice's
// lines can refuse it before loading them.
func (r Renderer) CheckLines(number string, n int) error {
	if maxLines := r.MaxLinesOrDefault(); n > maxLines {
		return fmt.Errorf("render invoice %s: %w: %d lines, more than the limit of %d",
			shortNumber(number), ErrTooLarge, n, maxLines)
	}
	return nil
}

// MaxLineBytesOrDefault is r's MaxLineBytes, or [DefaultMaxLineBytes]
// when that is zero or less: the most bytes the line descriptions of an
// invoice r renders may add up to.
func (r Renderer) MaxLineBytesOrDefault() int64 {
	if r.MaxLineBytes <= 0 {
		return DefaultMaxLineBytes
	}
	return r.MaxLineBytes
}

// CheckLineBytes returns the error [Renderer.Render] returns for an
// invoice numbered number whose line descriptions add up to n bytes when n
// is over the limit (wrapping [ErrTooLarge]), else nil: a caller that
// measured an invoice's lines in the database can refuse it before
// loading them.
func (r Renderer) CheckLineBytes(number string, n int64) error {
	if maxBytes := r.MaxLineBytesOrDefault(); n > maxBytes {
		return fmt.Errorf("render invoice %s: %w: line descriptions of %d bytes, more than the limit of %d",
			shortNumber(number), ErrTooLarge, n, maxBytes)
	}
	return nil
}

// missingGlyphs returns the first MaxReportedMissing of the characters
// of used (sorted) that the regular or the bold face lacks, followed by
// replaced (sorted: the characters printed as U+FFFD, all above used's),
// and how many they are in all.
func missingGlyphs(used, replaced []rune) ([]rune, int) {
	fs, err := faces()
	if err != nil {
		return nil, 0 // addFonts reported it
	}
	var missing []rune
	n := 0
	add := func(r rune) {
		if n++; len(missing) < MaxReportedMissing {
			missing = append(missing, r)
		}
	}
	for _, r := range used {
		_, regular := fs[0].glyphs[r]
		_, bold := fs[1].glyphs[r]
		if !regular || !bold {
			add(r)
		}
	}
	for _, r := range replaced {
		add(r)
	}
	return missing, n
}

// output lays inv out on f, a new document with fonts for enc registered,
// in at most maxPages pages, and writes it to w in one Write unless fpdf
// or ctx reported an error, the layout needed more pages or the document
// is larger than maxBytes. It returns the size of the document.
func output(ctx context.Context, w io.Writer, f *fpdf.Fpdf, inv Invoice, enc *encoding, fonts *docFonts, maxBytes int64, maxPages int) (int64, error) {
	newDocument(ctx, f, inv, enc, fonts, maxPages).render()
	if err := f.Error(); err != nil {
		return 0, fmt.Errorf("render invoice %s: %w", shortNumber(inv.Number), err)
	}
	out := getBuffer()
	defer putBuffer(out)
	dw := &deflateWriter{ctx: ctx, dst: out, maxBytes: maxBytes}
	defer dw.release()
	if err := f.Output(dw); err != nil {
		return 0, fmt.Errorf("render invoice %s: %w", shortNumber(inv.Number), err)
	}
	if err := dw.flush(); err != nil {
		return 0, fmt.Errorf("render invoice %s: %w", shortNumber(inv.Number), err)
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return int64(out.Len()), fmt.Errorf("write invoice %s pdf: %w", shortNumber(inv.Number), err)
	}
	return int64(out.Len()), nil
}

// createdAt is the creation date r writes into inv's document, in UTC.
func (r Renderer) createdAt(inv Invoice) time.Time {
	created := r.CreatedAt
	if created.IsZero() {
		created = inv.IssuedAt
	}
	if created.IsZero() {
		created = fallbackCreatedAt
	}
	return created.UTC()
}

// newPDF returns an empty A4 document with every setting that decides the
// output bytes fixed, so that nothing depends on fpdf's package-wide
// defaults or on the clock. Its streams are left uncompressed:
// deflateStreams compresses them.
func (r Renderer) newPDF(inv Invoice) *fpdf.Fpdf {
	created := r.createdAt(inv)

	f := fpdf.New("P", "mm", "A4", "")
	f.SetCreationDate(created)
	f.SetModificationDate(created)
	f.SetCatalogSort(true) // fonts are kept in a map: write them in sorted order
	f.SetCompression(false)
	f.SetProducer("tenantworker pdf", false)
	f.SetTitle(cleanText("Invoice "+inv.Number, false), true)
	f.SetAuthor(cleanText(inv.TenantName, false), true)
	f.AliasNbPages(pageCountAlias)
	return f
}
