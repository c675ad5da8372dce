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
// # Text
//
// Text goes through embedded Go fonts (golang.org/x/image/font/gofont)
// registered as UTF-8 fonts, so names such as "Müller GmbH", "Zoë", "Ωmega"
// or "Łódź" print as written. Characters outside the Basic Multilingual Plane
// (emoji, for instance), which fpdf cannot encode, and control characters are
// replaced by U+FFFD.
//
// # Layout
//
// A4 portrait. Every page carries the issuer (tenant) header and a
// "Page X of Y" footer. Line items form a table whose header is repeated on
// every page it continues on; long descriptions wrap inside their row and a
// row is kept on one page unless it is taller than a whole page.
//
// # Determinism
//
// The same input renders to the same bytes: the document's creation and
// modification dates are fixed ([Renderer.CreatedAt], else the invoice's
// IssuedAt), fonts and other catalog objects are written in sorted order,
// and the embedded font subsets depend only on the characters used.
package pdf
