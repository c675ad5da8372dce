package pdf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// errLayout reports a document deflateStreams cannot read: a bug, since
// it only reads what fpdf wrote.
var errLayout = errors.New("unexpected pdf layout")

// deflateStreams writes doc, a PDF as fpdf writes it with compression
// off, to dst with every stream that has no filter compressed with
// FlateDecode and the cross-reference table updated to the new offsets.
// It stops with ctx's error between streams, and with ErrTooLarge once
// dst holds more than maxBytes.
//
// fpdf's own compression makes a new zlib writer for every page, about a
// megabyte of zeroed tables each; this reuses pooled writers.
func deflateStreams(ctx context.Context, dst *bytes.Buffer, doc []byte, maxBytes int64) error {
	xref, err := readXref(doc)
	if err != nil {
		return err
	}
	// Objects in the order they appear; object 0 is the free list head.
	order := make([]int, 0, len(xref.offsets)-1)
	for n := 1; n < len(xref.offsets); n++ {
		order = append(order, n)
	}
	slices.SortFunc(order, func(a, b int) int { return xref.offsets[a] - xref.offsets[b] })
	if len(order) == 0 || xref.offsets[order[0]] <= 0 {
		return fmt.Errorf("%w: no objects", errLayout)
	}

	newOffsets := make([]int, len(xref.offsets))
	dst.Write(doc[:xref.offsets[order[0]]]) // header
	scratch := getBuffer()
	defer putBuffer(scratch)
	for i, n := range order {
		end := xref.start
		if i+1 < len(order) {
			end = xref.offsets[order[i+1]]
		}
		obj := doc[xref.offsets[n]:end]
		newOffsets[n] = dst.Len()
		data, ok := plainStream(obj, n)
		if !ok {
			dst.Write(obj)
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		scratch.Reset()
		if err := compressTo(scratch, data); err != nil {
			return err
		}
		b := dst.AvailableBuffer()
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, " 0 obj\n<</Filter /FlateDecode /Length "...)
		b = strconv.AppendInt(b, int64(scratch.Len()), 10)
		b = append(b, ">>\nstream\n"...)
		dst.Write(b)
		dst.Write(scratch.Bytes())
		dst.WriteString("\nendstream\nendobj\n")
		if int64(dst.Len()) > maxBytes {
			return fmt.Errorf("%w: the document exceeds the limit of %d bytes", ErrTooLarge, maxBytes)
		}
	}

	start := dst.Len()
	fmt.Fprintf(dst, "xref\n0 %d\n0000000000 65535 f \n", len(newOffsets))
	for _, off := range newOffsets[1:] {
		b := dst.AvailableBuffer()
		b = fmt.Appendf(b, "%010d 00000 n \n", off)
		dst.Write(b)
	}
	dst.Write(xref.trailer)
	fmt.Fprintf(dst, "startxref\n%d\n%%%%EOF\n", start)
	if int64(dst.Len()) > maxBytes {
		return fmt.Errorf("%w: the document exceeds the limit of %d bytes", ErrTooLarge, maxBytes)
	}
	return nil
}

// deflateWriter runs deflateStreams on what fpdf's Output writes to it.
// fpdf writes its whole document in one Write, which is deflated from
// fpdf's own buffer; other writes are gathered first.
type deflateWriter struct {
	ctx      context.Context
	dst      *bytes.Buffer
	maxBytes int64
	gathered *bytes.Buffer // writes not yet deflated
	done     bool          // deflateStreams ran
}

// Write deflates p if it is a whole document, else gathers it.
func (w *deflateWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("%w: write after the end of the document", errLayout)
	}
	if w.gathered == nil && bytes.HasPrefix(p, []byte("%PDF-")) && bytes.HasSuffix(p, []byte("%%EOF\n")) {
		w.done = true
		return len(p), deflateStreams(w.ctx, w.dst, p, w.maxBytes)
	}
	if w.gathered == nil {
		w.gathered = getBuffer()
	}
	return w.gathered.Write(p)
}

// flush deflates the gathered writes, if any.
func (w *deflateWriter) flush() error {
	if w.done {
		return nil
	}
	w.done = true
	if w.gathered == nil {
		return fmt.Errorf("%w: empty document", errLayout)
	}
	return deflateStreams(w.ctx, w.dst, w.gathered.Bytes(), w.maxBytes)
}

// release returns the gathering buffer.
func (w *deflateWriter) release() {
	if w.gathered != nil {
		putBuffer(w.gathered)
		w.gathered = nil
	}
}

// xrefTable is the cross-reference table of a PDF fpdf wrote.
type xrefTable struct {
	start   int    // offset of "xref"
	offsets []int  // object number → offset; [0] unused
	trailer []byte // "trailer" up to "startxref"
}

// readXref reads the cross-reference table at the end of doc.
func readXref(doc []byte) (xrefTable, error) {
	var x xrefTable
	i := bytes.LastIndex(doc, []byte("startxref\n"))
	if i < 0 {
		return x, fmt.Errorf("%w: no startxref", errLayout)
	}
	num, _, _ := bytes.Cut(doc[i+len("startxref\n"):], []byte("\n"))
	start, err := strconv.Atoi(string(num))
	if err != nil || start < 0 || start > i {
		return x, fmt.Errorf("%w: bad startxref", errLayout)
	}
	x.start = start
	rest, ok := bytes.CutPrefix(doc[start:i], []byte("xref\n0 "))
	if !ok {
		return x, fmt.Errorf("%w: no xref at startxref", errLayout)
	}
	count, rest, _ := bytes.Cut(rest, []byte("\n"))
	n, err := strconv.Atoi(string(count))
	if err != nil || n < 1 || len(rest) < 20*n {
		return x, fmt.Errorf("%w: bad xref size", errLayout)
	}
	x.offsets = make([]int, n)
	for k := 1; k < n; k++ {
		e := rest[20*k : 20*k+20]
		off, err := strconv.Atoi(string(e[:10]))
		if err != nil || string(e[10:]) != " 00000 n \n" || off <= 0 || off >= start {
			return x, fmt.Errorf("%w: bad xref entry %d", errLayout, k)
		}
		x.offsets[k] = off
	}
	x.trailer = rest[20*n:]
	if !bytes.HasPrefix(x.trailer, []byte("trailer\n")) {
		return x, fmt.Errorf("%w: no trailer", errLayout)
	}
	return x, nil
}

// plainStream returns the data of obj, the whole text of object n, when
// it is a stream with no filter, exactly as fpdf writes one:
//
//	n 0 obj
//	<</Length len>>
//	stream
//	data
//	endstream
//	endobj
func plainStream(obj []byte, n int) ([]byte, bool) {
	var buf [32]byte
	head := strconv.AppendInt(buf[:0], int64(n), 10)
	head = append(head, " 0 obj\n<</Length "...)
	rest, ok := bytes.CutPrefix(obj, head)
	if !ok {
		return nil, false
	}
	num, rest, ok := bytes.Cut(rest, []byte(">>\nstream\n"))
	if !ok {
		return nil, false
	}
	length, err := strconv.Atoi(string(num))
	if err != nil || length < 0 || length > len(rest) {
		return nil, false
	}
	if string(rest[length:]) != "\nendstream\nendobj\n" {
		return nil, false
	}
	return rest[:length], true
}
