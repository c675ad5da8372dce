// Package pdf renders an invoice to a PDF document.
//
// The package is pure: [Render] takes an [Invoice] value and writes the
// document to an [io.Writer]. It reads no database and no files; the worker's
// handler loads the invoice and stores the bytes.
//
// # Money
//
// Amounts are exact decimals ([decimal.Decimal]), never float64. A line total
// is quantity × unit price rounded half away from zero to the currency's minor
// units (JPY 0, USD/EUR/GBP 2, KWD/BHD 3, unknown currencies 2; see
// [MinorUnits]). The subtotal is the sum of the rounded line totals, so the
// printed lines always add up to the printed subtotal. The invoice carries no
// taxes or discounts of its own, so the total equals the subtotal; a discount
// is a line with a negative quantity or unit price. [LineTotal], [Subtotal]
// and [FormatMoney] are exported so that the worker and tests compute and
// print exactly what the document shows.
//
// # Text and fonts
//
// Text is set in the embedded Go fonts (golang.org/x/image/font/gofont),
// regular and bold, so names such as "Müller GmbH", "Zoë", "Ωmega" or "Łódź"
// print as written and can be searched and copied. Characters outside the
// Basic Multilingual Plane (emoji, for instance) and control characters are
// replaced by U+FFFD, and invisible format characters (zero-width spaces
// and joiners, bidirectional marks and overrides, byte-order marks: all of
// Unicode's Cf but the soft hyphen) are left out, since the fonts have no
// glyph for them; no other character is ever replaced or dropped. A soft
// hyphen (U+00AD) marks where a word may break: it prints, as a hyphen,
// only at the end of a line that breaks there. The
// fonts have no glyphs for some scripts (Chinese, Japanese, Arabic, Hebrew,
// for instance): such characters print as empty boxes, still extract as
// written, and are listed in [Result.Missing], as are those replaced by
// U+FFFD for being outside the Basic Multilingual Plane. Text is laid out left to
// right, right-to-left scripts included.
//
// How the text is encoded follows its characters, and [Result.FontPath]
// reports it: [FontPathCP1252] when Windows-1252 holds them all,
// [FontPathCP1250] when Windows-1250 does, [FontPathUTF8] for up to 129
// other characters in one document (Greek, Cyrillic, mixed scripts), and
// [FontPathUTF8CID] beyond that. The first three embed the fonts as
// single-byte TrueType fonts subset to the document's characters, from
// fonts parsed once per process; the last uses fpdf's UTF-8 fonts, which
// fpdf parses for every document and which take several milliseconds. All
// paths look the same: same fonts, same widths, same layout.
//
// # Layout
//
// A4 portrait. Every page carries the issuer (tenant) header and a
// "Page X of Y" footer, both with the invoice number (its first 64
// characters and "..." when it is longer; the details print it whole). Line items form a table whose header is repeated on
// every page it continues on and kept on the page of the first row; long
// descriptions wrap inside their row and a row is kept on one page unless
// it is taller than a whole page. Numbers
// (quantities, prices, amounts, totals) are never wrapped or cut off: one
// too wide for its cell prints whole on one line in a smaller size.
//
// # Limits and cancellation
//
// An invoice with more line items than [Renderer.MaxLines] (default
// [DefaultMaxLines]) or line descriptions of more bytes than
// [Renderer.MaxLineBytes] (default [DefaultMaxLineBytes]) is refused
// before any work, the layout stops when the
// document would get more pages than [Renderer.MaxPages] (default
// [DefaultMaxPages]), and a document larger than [Renderer.MaxBytes]
// (default [DefaultMaxBytes]) is not written; all these errors wrap
// [ErrTooLarge]. Rendering checks its context as it reads the invoice's
// text (every 64 KB, before the layout and as the layout encodes each
// text for the fonts), between pages and between the streams it
// compresses, and stops once it is done.
//
// Render memory stays bounded: fpdf holds every page until it writes the
// document, so memory grows with the pages, which the page limit bounds,
// and with the length of the text (a text is wrapped into no more lines
// than the page limit can hold). A 5,000-line invoice of short lines
// allocates about 35 MB in all; the largest measured, 5,000 lines of 2 KB
// descriptions (about 6,600 pages), 400-700 MB; a render stopped at the
// default page limit, 200-350 MB, with a heap of about 100 MB. (Without
// the page limit a customer address of 10 MB of short lines laid out
// 97,091 pages and took 1.46 GB of heap before the document was refused
// for its size.)
//
// # Determinism
//
// The same input renders to the same bytes: the document's creation and
// modification dates are fixed ([Renderer.CreatedAt], else the invoice's
// IssuedAt), fonts and other catalog objects are written in sorted order,
// and the embedded font subsets and encodings depend only on the characters
// used.
package pdf
