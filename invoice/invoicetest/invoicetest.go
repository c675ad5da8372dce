// Package invoicetest generates random invoices, with the exact figures
// their documents must print, and checks what a rendered invoice's text
// (pdftotext -layout) says against them: every line's quantity, unit
// price and amount, the subtotal and the total, in the currency's minor
// units, computed with math/big apart from the code under test. The
// property tests of the invoice package and of the worker's PDF and
// reminder tasks use it.
package invoicetest

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/shopspring/decimal"
	"golang.org/x/text/unicode/norm"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
)

// Currencies is every currency code the schema's minor_units knows,
// with its minor units, and a few 2-decimal ones it does not name.
var Currencies = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
	"USD": 2, "EUR": 2, "GBP": 2, "PLN": 2, "CHF": 2,
}

// propScripts are the alphabets of the generated text, by the font path
// they should take the document down.
var propScripts = []struct {
	path    pdf.FontPath
	letters string
}{
	{pdf.FontPathCP1252, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
	{pdf.FontPathCP1252, "abcdeéèêëàâäçñöüßÄÖÜÉœŒøØåÅæÆ"},
	{pdf.FontPathCP1250, "abcdeąćęłńóśźżčřšžůĄĆĘŁŃÓŚŹŻČŘŠŽŮőű"},
	{pdf.FontPathUTF8, "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώΑΒΓΔΕΖΗΘабвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЁЖЗ"},
	{pdf.FontPathUTF8CID, ""}, // many distinct characters: see cidLetters
}

// cidLetters are more distinct non-ASCII characters than the utf8 path's
// document encoding holds, all with glyphs in the Go fonts.
func cidLetters() []rune {
	var rs []rune
	for r := rune(0x391); r <= 0x3A9; r++ {
		if r != 0x3A2 {
			rs = append(rs, r)
		}
	}
	for r := rune(0x3B1); r <= 0x3C9; r++ {
		rs = append(rs, r)
	}
	for r := rune(0x410); r <= 0x44F; r++ {
		rs = append(rs, r)
	}
	for r := rune(0x100); r <= 0x17F; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Line is a generated line with its exact values as scaled integers.
type Line struct {
	Desc       string
	Qty, Price string // column-exact decimal literals
}

// Random is one generated invoice and what it should print.
type Random struct {
	// New is the invoice to create (invoice.Create).
	New   invoice.New
	Lines []Line
	// Currency is the ISO code as the document prints it (New.Currency
	// may be in another case, as the app may store it).
	Currency string
	// Path is the font path the document should take.
	Path pdf.FontPath
	// Given: New.Amount is given explicitly (the lines' sum does not fit
	// the amount column), so the stored amount differs from the lines.
	Given bool
}

// MinorUnits is the number of decimals of p's currency.
func (p Random) MinorUnits() int { return Currencies[p.Currency] }

// genDecimal returns a random literal with at most intDigits integer and
// exactly scale decimal digits (trailing zeros kept), sometimes at the
// column's limit, sometimes negative.
func genDecimal(rng *rand.Rand, intDigits, scale int, limit bool, negative bool) string {
	var digits strings.Builder
	if limit {
		digits.WriteString(strings.Repeat("9", intDigits))
	} else {
		n := 1 + rng.IntN(intDigits)
		for i := range n {
			d := rng.IntN(10)
			if i == 0 && n > 1 && d == 0 {
				d = 1
			}
			digits.WriteByte(byte('0' + d))
		}
	}
	s := digits.String()
	if scale > 0 {
		var frac strings.Builder
		for range scale {
			if limit {
				frac.WriteByte('9')
			} else {
				frac.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		s += "." + frac.String()
	}
	if negative {
		s = "-" + s
	}
	return s
}

// scaled returns literal s as an integer in units of 10^-scale.
func scaled(s string, scale int) *big.Int {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	ip, fp, _ := strings.Cut(s, ".")
	fp += strings.Repeat("0", scale-len(fp))
	n, ok := new(big.Int).SetString(ip+fp, 10)
	if !ok {
		panic(s)
	}
	if neg {
		n.Neg(n)
	}
	return n
}

// roundScaled rounds n, in units of 10^-from, half away from zero to units
// of 10^-to (to <= from).
func roundScaled(n *big.Int, from, to int) *big.Int {
	if to >= from {
		return new(big.Int).Mul(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(to-from)), nil))
	}
	div := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(from-to)), nil)
	abs := new(big.Int).Abs(n)
	q, r := new(big.Int).QuoRem(abs, div, new(big.Int))
	if new(big.Int).Mul(r, big.NewInt(2)).Cmp(div) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if n.Sign() < 0 {
		q.Neg(q)
	}
	return q
}

// FormatScaled formats n, in units of 10^-scale, with scale decimals, ","
// between thousands, and no sign when it is zero.
func FormatScaled(n *big.Int, scale int) string {
	abs := new(big.Int).Abs(n).String()
	if len(abs) <= scale {
		abs = strings.Repeat("0", scale-len(abs)+1) + abs
	}
	ip, fp := abs[:len(abs)-scale], abs[len(abs)-scale:]
	var b strings.Builder
	if n.Sign() < 0 {
		b.WriteByte('-')
	}
	for i, c := range ip {
		if i > 0 && (len(ip)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if scale > 0 {
		b.WriteString("." + fp)
	}
	return b.String()
}

// exactLiteral formats literal s exactly: without trailing fractional
// zeros, padded to at least minScale decimals, grouped.
func exactLiteral(s string, minScale int) string {
	ip, fp, _ := strings.Cut(s, ".")
	fp = strings.TrimRight(fp, "0")
	scale := max(len(fp), minScale)
	return FormatScaled(scaled(ip+"."+fp, scale), scale)
}

// genText returns words from letters (ASCII when letters is empty), with a
// very long word now and then.
func genText(rng *rand.Rand, letters []rune, words int, long bool) string {
	parts := make([]string, words)
	for i := range parts {
		n := 1 + rng.IntN(10)
		if long && rng.IntN(4) == 0 {
			n = 40 + rng.IntN(120) // wider than the description column
		}
		w := make([]rune, n)
		for j := range w {
			w[j] = letters[rng.IntN(len(letters))]
		}
		parts[i] = string(w)
	}
	return strings.Join(parts, " ")
}

// Generate generates invoice k (its number PROP-k) from rng: 1 to 120
// lines, quantities and prices up to their columns' limits, negative ones,
// text in the scripts of every font path, every currency class.
func Generate(rng *rand.Rand, k int) Random {
	script := propScripts[rng.IntN(len(propScripts))]
	letters := []rune(script.letters)
	cid := false
	if script.path == pdf.FontPathUTF8CID {
		letters, cid = cidLetters(), true
	}
	codes := make([]string, 0, len(Currencies))
	for c := range Currencies {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	cur := codes[rng.IntN(len(codes))]
	stored := cur
	if rng.IntN(5) == 0 {
		stored = strings.ToLower(cur) // the app may store any case
	}
	p := Random{Currency: cur, Path: script.path}
	nLines := 1 + rng.IntN(120)
	limits := rng.IntN(6) == 0
	for i := range nLines {
		desc := fmt.Sprintf("#%03d %s", i+1, genText(rng, letters, 1+rng.IntN(12), true))
		if cid && i == 0 {
			desc += " " + string(letters) // every character: over the utf8 path's 129
		}
		switch rng.IntN(40) {
		case 0: // a row taller than a page
			desc += " " + genText(rng, letters, 600, true)
		case 1: // line breaks and tabs in the description
			desc += "\n" + genText(rng, letters, 3, false) + "\r\n\t" + genText(rng, letters, 3, true)
		case 2: // one word longer than a page's lines
			desc += " " + genText(rng, letters, 1, false) + strings.Repeat(string(letters[0:3]), 1500)
		}
		if rng.IntN(10) == 0 && !cid {
			// Decomposed diacritics: printed composed.
			desc += " Mu\u0308ller e\u0301te"
		}
		lim := limits && rng.IntN(3) == 0
		qtyDigits, priceDigits := 1+rng.IntN(4), 1+rng.IntN(6)
		if limits {
			qtyDigits, priceDigits = 9, 10
		}
		l := Line{
			Desc:  desc,
			Qty:   genDecimal(rng, qtyDigits, rng.IntN(4), lim, rng.IntN(15) == 0),
			Price: genDecimal(rng, priceDigits, rng.IntN(3), lim, rng.IntN(8) == 0),
		}
		p.Lines = append(p.Lines, l)
		p.New.Lines = append(p.New.Lines, invoice.Line{Description: l.Desc, Quantity: decimal.RequireFromString(l.Qty), UnitPrice: decimal.RequireFromString(l.Price)})
	}
	name := genText(rng, letters, 2, false)
	if len([]rune(name)) > 30 {
		name = string([]rune(name)[:30])
	}
	p.New.Number = fmt.Sprintf("PROP-%04d", k)
	p.New.Customer = invoice.Customer{Name: strings.TrimSpace(name) + " Zoë", Email: fmt.Sprintf("c%d@example.org", k)}
	p.New.Currency = stored
	p.New.Status = "sent"
	p.New.IssuedAt = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	p.New.DueAt = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	if rng.IntN(3) == 0 {
		p.New.Notes = genText(rng, letters, 3, false)
	}
	// The amount the database computes must fit numeric(12,2).
	sum := p.Total()
	mu := Currencies[cur]
	if new(big.Int).Abs(roundScaled(sum, mu, 2)).Cmp(new(big.Int).Exp(big.NewInt(10), big.NewInt(12), nil)) >= 0 {
		p.Given = true
		p.New.Amount = decimal.NewNullDecimal(decimal.RequireFromString("1.00"))
	}
	return p
}

// LineTotal is line l's amount in units of the currency's minor unit.
func (p Random) LineTotal(l Line) *big.Int {
	prod := new(big.Int).Mul(scaled(l.Qty, 3), scaled(l.Price, 2)) // 10^-5
	return roundScaled(prod, 5, Currencies[p.Currency])
}

// Total is the sum of the rounded lines, in units of the currency's
// minor unit.
func (p Random) Total() *big.Int {
	sum := new(big.Int)
	for _, l := range p.Lines {
		sum.Add(sum, p.LineTotal(l))
	}
	return sum
}

// LayoutText is pdftotext -layout's text of doc.
func LayoutText(t testing.TB, doc []byte) string {
	t.Helper()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatalf("pdftotext not found (install poppler-utils: apt-get install poppler-utils): %v", err)
	}
	in := filepath.Join(t.TempDir(), "invoice.pdf")
	if err := os.WriteFile(in, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", "-enc", "UTF-8", in, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, out)
	}
	return string(out)
}

// noSpace removes all white space from s.
func noSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// Check checks the text of a rendered document of p, stored as inv,
// against p's exact values; it returns the mismatches.
func Check(p Random, inv invoice.Invoice, text string) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	cur := p.Currency
	mu := Currencies[cur]
	if inv.Currency != cur {
		fail("loaded currency %q, want %q", inv.Currency, cur)
	}
	total := FormatScaled(p.Total(), mu)

	// The stored amount is the lines' total, in numeric(12,2).
	if !p.Given {
		want := decimal.NewFromBigInt(roundScaled(p.Total(), mu, 2), -2)
		if !inv.Amount.Equal(want) {
			fail("stored amount %s, want %s (lines' total %s)", inv.Amount, want, total)
		}
	}

	pages := strings.Split(strings.TrimSuffix(text, "\f"), "\f")
	header := regexp.MustCompile(`^\s*Description\s+Quantity\s+Unit price \(` + cur + `\)\s+Amount \(` + cur + `\)\s*$`)
	footer := regexp.MustCompile(`Page (\d+) of (\d+)`)
	totalRe := regexp.MustCompile(`^\s*Total\s+` + cur + ` ` + regexp.QuoteMeta(total) + `\s*$`)
	anyTotal := regexp.MustCompile(`^\s*Total\s`)
	subtotalRe := regexp.MustCompile(`^\s*Subtotal\s+` + cur + ` ` + regexp.QuoteMeta(total) + `\s*$`)
	anySubtotal := regexp.MustCompile(`^\s*Subtotal\s`)

	// Table rows in order over every page.
	var rows []string
	totals, subtotals := 0, 0
	for pi, page := range pages {
		lines := strings.Split(page, "\n")
		if m := footer.FindStringSubmatch(page); m == nil || m[1] != strconv.Itoa(pi+1) || m[2] != strconv.Itoa(len(pages)) {
			fail("page %d: footer %q, want Page %d of %d", pi+1, m, pi+1, len(pages))
		}
		in := false
		for _, l := range lines {
			switch {
			case header.MatchString(l):
				in = true
				continue
			case anySubtotal.MatchString(l):
				subtotals++
				if !subtotalRe.MatchString(l) {
					fail("subtotal line %q, want %s %s", strings.TrimSpace(l), cur, total)
				}
				in = false
			case anyTotal.MatchString(l):
				totals++
				if !totalRe.MatchString(l) {
					fail("total line %q, want %s %s", strings.TrimSpace(l), cur, total)
				}
				// Only the notes, under the totals, may follow them.
				if pi != len(pages)-1 && (inv.Notes == "" || pi != len(pages)-2) {
					fail("total on page %d of %d", pi+1, len(pages))
				}
				in = false
			case footer.MatchString(l):
				in = false
			}
			if in && strings.TrimSpace(l) != "" {
				rows = append(rows, l)
			}
		}
	}
	if totals != 1 || subtotals != 1 {
		fail("%d total lines and %d subtotal lines, want one each", totals, subtotals)
	}

	// Each line: its first text line ends with its quantity, unit price
	// and amount; its description is all its lines' text before those.
	r := 0
	for i, l := range p.Lines {
		qty, price, amount := exactLiteral(l.Qty, 0), exactLiteral(l.Price, mu), FormatScaled(p.LineTotal(l), mu)
		re := regexp.MustCompile(`^(.*?)\s+` + regexp.QuoteMeta(qty) + `\s+` + regexp.QuoteMeta(price) + `\s+` + regexp.QuoteMeta(amount) + `\s*$`)
		if r >= len(rows) {
			fail("line %d (%s x %s = %s) not found: no rows left", i+1, qty, price, amount)
			break
		}
		m := re.FindStringSubmatch(rows[r])
		if m == nil {
			fail("line %d: row %q, want it to end with %s %s %s", i+1, strings.TrimSpace(rows[r]), qty, price, amount)
			break
		}
		desc := m[1]
		r++
		var next *regexp.Regexp
		if i+1 < len(p.Lines) {
			next = regexp.MustCompile(`^#` + fmt.Sprintf("%03d", i+2) + `\s`)
		}
		for r < len(rows) && (next == nil || !next.MatchString(strings.TrimSpace(rows[r]))) {
			desc += rows[r]
			r++
		}
		if got, want := noSpace(desc), noSpace(norm.NFC.String(l.Desc)); got != want {
			fail("line %d: description reads back as\n%q\nwant\n%q", i+1, got, want)
		}
	}
	// Names with diacritics come back.
	if !strings.Contains(strings.Join(strings.Fields(text), " "), inv.Customer.Name) {
		fail("customer name %q not in the text", inv.Customer.Name)
	}
	if inv.Notes != "" && !strings.Contains(noSpace(text), noSpace(inv.Notes)) {
		fail("notes %q not in the text", inv.Notes)
	}
	return errs
}
