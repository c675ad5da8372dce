package pdf

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// goldenSample is the SHA-256 of sampleInvoice's document at
// LayoutVersion. When a change to the renderer (or to a module it uses)
// changes the bytes, this test fails: bump LayoutVersion, so that stored
// documents are rendered again, and update both.
const (
	goldenLayout = "2026-12-6.1"
	goldenSample = "209b1123912da3e6eaaf31b43085a52025aa729b5b652523736afe8701d8421a"
)

func TestInputsHashFollowsTheBytes(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256(render(t, Renderer{}, sampleInvoice()))
	got := hex.EncodeToString(sum[:])
	if LayoutVersion != goldenLayout || got != goldenSample {
		t.Errorf("LayoutVersion %q renders the sample to %s; the test pins %q to %s: "+
			"bump LayoutVersion when the bytes change, then update goldenLayout and goldenSample", LayoutVersion, got, goldenLayout, goldenSample)
	}
}

func TestInputsHash(t *testing.T) {
	t.Parallel()
	base := sampleInvoice()
	h := InputsHash(Renderer{}, base)
	if len(h) != 64 || InputsHash(Renderer{}, sampleInvoice()) != h {
		t.Fatalf("InputsHash is not a stable hex SHA-256: %q", h)
	}
	// Limits decide whether a document is written, not its bytes.
	if InputsHash(Renderer{MaxLines: 3, MaxBytes: 1 << 20}, base) != h {
		t.Error("limits changed the inputs hash")
	}
	changes := map[string]func(*Invoice, *Renderer){
		"tenant":       func(i *Invoice, _ *Renderer) { i.TenantName += "x" },
		"number":       func(i *Invoice, _ *Renderer) { i.Number += "x" },
		"issued":       func(i *Invoice, _ *Renderer) { i.IssuedAt = i.IssuedAt.Add(time.Second) },
		"due":          func(i *Invoice, _ *Renderer) { i.DueAt = time.Time{} },
		"zone":         func(i *Invoice, _ *Renderer) { i.DueAt = i.DueAt.In(time.FixedZone("x", -3600)) },
		"status":       func(i *Invoice, _ *Renderer) { i.Status = "paid" },
		"currency":     func(i *Invoice, _ *Renderer) { i.Currency = "USD" },
		"customer":     func(i *Invoice, _ *Renderer) { i.Customer.Name += "x" },
		"company":      func(i *Invoice, _ *Renderer) { i.Customer.Company += "x" },
		"email":        func(i *Invoice, _ *Renderer) { i.Customer.Email += "x" },
		"address":      func(i *Invoice, _ *Renderer) { i.Customer.Address += "x" },
		"notes":        func(i *Invoice, _ *Renderer) { i.Notes += "x" },
		"line text":    func(i *Invoice, _ *Renderer) { i.Lines[0].Description += "x" },
		"quantity":     func(i *Invoice, _ *Renderer) { i.Lines[0].Quantity = dec("10.5") },
		"price":        func(i *Invoice, _ *Renderer) { i.Lines[1].UnitPrice = dec("34.51") },
		"price digits": func(i *Invoice, _ *Renderer) { i.Lines[1].UnitPrice = dec("34.50") },
		"line moved":   func(i *Invoice, _ *Renderer) { i.Lines[0], i.Lines[1] = i.Lines[1], i.Lines[0] },
		"line dropped": func(i *Invoice, _ *Renderer) { i.Lines = i.Lines[:2] },
		"fields shifted": func(i *Invoice, _ *Renderer) {
			i.Customer.Name, i.Customer.Company = i.Customer.Name+i.Customer.Company, ""
		},
		"amount, no lines": func(i *Invoice, _ *Renderer) { i.Lines, i.Amount = nil, decimal.NewNullDecimal(dec("1")) },
		"another amount, no lines": func(i *Invoice, _ *Renderer) {
			i.Lines, i.Amount = nil, decimal.NewNullDecimal(dec("1.0"))
		},
		"no amount, no lines": func(i *Invoice, _ *Renderer) { i.Lines, i.Amount = nil, decimal.NullDecimal{} },
		"created":             func(_ *Invoice, r *Renderer) { r.CreatedAt = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	seen := map[string]string{h: "base"}
	for name, change := range changes {
		inv, r := sampleInvoice(), Renderer{}
		change(&inv, &r)
		got := InputsHash(r, inv)
		if other, ok := seen[got]; ok {
			t.Errorf("%s: same inputs hash as %s", name, other)
		}
		seen[got] = name
	}
}

// TestInputsHashIgnoresAmountWithLines: with lines the stored amount is
// not printed, so changing it keeps both the hash and the bytes (a render
// would be for nothing).
func TestInputsHashIgnoresAmountWithLines(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	other := sampleInvoice()
	other.Amount = decimal.NewNullDecimal(dec("1.00"))
	if InputsHash(Renderer{}, inv) != InputsHash(Renderer{}, other) {
		t.Error("an amount that is not printed changed the inputs hash")
	}
	if a, b := render(t, Renderer{}, inv), render(t, Renderer{}, other); sha256.Sum256(a) != sha256.Sum256(b) {
		t.Error("an invoice with lines rendered differently with another stored amount: the hash must include it")
	}
}

func TestAmountPrintedWithoutLines(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice()
	inv.Amount = decimal.NewNullDecimal(dec("99.95"))
	if got := Subtotal(inv); !got.Equal(dec("1224.50")) {
		t.Errorf("with lines Subtotal = %s, want the lines' sum 1224.50", got)
	}
	inv.Lines = nil
	if got := Subtotal(inv); !got.Equal(dec("99.95")) {
		t.Errorf("without lines Subtotal = %s, want the amount", got)
	}
}
