package pdf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"time"

	"github.com/shopspring/decimal"
)

// LayoutVersion names the renderer's output for a given input. It changes
// whenever the same [Invoice] would render to different bytes (layout,
// fonts, encodings, the PDF writer), so that [InputsHash] changes with it;
// a test pins the bytes of a sample document to it.
const LayoutVersion = "2026-12-6.1"

// InputsHash returns a hex SHA-256 of everything the bytes of r's render
// of inv depend on: [LayoutVersion], the creation date r would write and
// every field of inv that the document shows (decimals with their
// exponent, dates as printed; Amount only for an invoice without lines). Equal hashes mean equal documents, so a
// caller that kept the hash of a stored document can skip rendering it
// again. Limits are not part of it: they decide whether a document is
// written, not what it holds.
func InputsHash(r Renderer, inv Invoice) string {
	h := inputsHasher{h: sha256.New()}
	h.str(LayoutVersion)
	// The dates as the document writes them: the creation date to the
	// second in UTC (newPDF), the issue and due dates as printed.
	h.time(r.createdAt(inv).Truncate(time.Second))
	h.str(inv.TenantName)
	h.str(inv.Number)
	h.str(formatDate(inv.IssuedAt))
	h.str(formatDate(inv.DueAt))
	h.str(inv.Status)
	h.str(inv.Currency)
	c := inv.Customer
	h.str(c.Name)
	h.str(c.Company)
	h.str(c.Email)
	h.str(c.Address)
	h.int(int64(len(inv.Lines)))
	for _, l := range inv.Lines {
		h.str(l.Description)
		h.dec(l.Quantity)
		h.dec(l.UnitPrice)
	}
	h.str(inv.Notes)
	// The stored amount is printed only for an invoice without lines
	// (Subtotal): with lines the document shows their sum, whatever the
	// amount says, so an edit of the amount alone renders nothing new.
	switch {
	case len(inv.Lines) > 0:
	case inv.Amount.Valid:
		h.int(1)
		h.dec(inv.Amount.Decimal)
	default:
		h.int(0)
	}
	return hex.EncodeToString(h.h.Sum(nil))
}

// inputsHasher writes length-prefixed fields, so no two different inputs
// share an encoding.
type inputsHasher struct {
	h   hash.Hash
	buf [binary.MaxVarintLen64]byte
	// chunk carries text to the hash: []byte(s) through the hash's
	// interface copied each text whole, as much again as the invoice's
	// text, which the page limit does not bound.
	chunk [4096]byte
}

func (h *inputsHasher) int(n int64) {
	h.h.Write(binary.AppendVarint(h.buf[:0], n))
}

func (h *inputsHasher) str(s string) {
	h.int(int64(len(s)))
	for len(s) > 0 {
		n := copy(h.chunk[:], s)
		h.h.Write(h.chunk[:n])
		s = s[n:]
	}
}

func (h *inputsHasher) dec(d decimal.Decimal) {
	h.str(d.Coefficient().String())
	h.int(int64(d.Exponent()))
}

func (h *inputsHasher) time(t time.Time) {
	if t.IsZero() {
		h.int(0)
		return
	}
	_, offset := t.Zone()
	h.int(1)
	h.int(t.Unix())
	h.int(int64(t.Nanosecond()))
	h.int(int64(offset))
}
