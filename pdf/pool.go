package pdf

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/adler32"
	"io"
	"runtime"
)

// freeList keeps up to a fixed number of values for reuse. Unlike a
// sync.Pool it is not emptied by the garbage collector: a render
// allocates enough for a collection every few renders, and a flate
// writer lost to each one costs a megabyte zeroed again.
type freeList[T any] struct {
	free  chan T
	new   func() T
	reset func(T) bool // prepares a value for reuse; false drops it
}

// newFreeList returns a free list of up to size values made by newT.
func newFreeList[T any](size int, newT func() T, reset func(T) bool) *freeList[T] {
	return &freeList[T]{free: make(chan T, size), new: newT, reset: reset}
}

// get returns a kept value or a new one.
func (l *freeList[T]) get() T {
	select {
	case v := <-l.free:
		return v
	default:
		return l.new()
	}
}

// put keeps v for reuse, unless the list is full or reset refuses it; v
// must not be used after.
func (l *freeList[T]) put(v T) {
	if !l.reset(v) {
		return
	}
	select {
	case l.free <- v:
	default:
	}
}

// A new flate writer allocates and zeroes about a megabyte of tables; fpdf
// makes one for every stream it compresses. The renderer turns fpdf's
// compression off and compresses with these writers instead, which Reset
// reuses without that cost. BestSpeed keeps Reset cheap (the other
// levels clear their hash tables on every Reset) and is the level fpdf
// uses. The output does not depend on what a writer compressed before.
// One writer per CPU is kept: a render uses one at a time.
var flateWriters = newFreeList(runtime.GOMAXPROCS(0),
	func() *flate.Writer {
		w, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // the level is valid
		return w
	},
	func(w *flate.Writer) bool { w.Reset(io.Discard); return true })

// zlibHeader starts a zlib stream of deflate data with a 32 KiB window.
var zlibHeader = []byte{0x78, 0x01}

// compressTo appends data compressed in the zlib format (what PDF's
// FlateDecode reads) to dst.
func compressTo(dst *bytes.Buffer, data []byte) error {
	zw := flateWriters.get()
	defer flateWriters.put(zw)
	dst.Write(zlibHeader)
	zw.Reset(dst)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	dst.Write(binary.BigEndian.AppendUint32(dst.AvailableBuffer(), adler32.Checksum(data)))
	return nil
}

// maxKeptBuffer is the largest buffer buffers keeps: a huge document's
// buffers are left to the garbage collector.
const maxKeptBuffer = 1 << 20

// buffers holds the renderer's scratch buffers; a render uses up to six.
var buffers = newFreeList(8*runtime.GOMAXPROCS(0),
	func() *bytes.Buffer { return new(bytes.Buffer) },
	func(b *bytes.Buffer) bool { b.Reset(); return b.Cap() <= maxKeptBuffer })

// getBuffer returns an empty buffer.
func getBuffer() *bytes.Buffer { return buffers.get() }

// putBuffer keeps b for reuse; b must not be used after.
func putBuffer(b *bytes.Buffer) { buffers.put(b) }
