package pdf

import (
	"bytes"
	"compress/zlib"
	"io"
	"sync"
)

// A new zlib writer allocates and zeroes about a megabyte of tables; fpdf
// makes one for every stream it compresses. The renderer turns fpdf's
// compression off and compresses with these writers instead, which Reset
// reuses without that cost. BestSpeed keeps Reset cheap (the other
// levels clear their hash tables on every Reset) and is the level fpdf
// uses. The output does not depend on what a writer compressed before.
var zlibWriters = sync.Pool{
	New: func() any {
		w, _ := zlib.NewWriterLevel(io.Discard, zlib.BestSpeed) // the level is valid
		return w
	},
}

// compressTo appends data compressed in the zlib format to dst.
func compressTo(dst *bytes.Buffer, data []byte) error {
	zw := zlibWriters.Get().(*zlib.Writer)
	defer zlibWriters.Put(zw)
	zw.Reset(dst)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	return zw.Close()
}

// maxPooledBuffer is the largest buffer put back into buffers: a huge
// document's buffer is left to the garbage collector rather than kept.
const maxPooledBuffer = 4 << 20

// buffers holds the renderer's scratch buffers.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// getBuffer returns an empty buffer from the pool.
func getBuffer() *bytes.Buffer {
	b := buffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// putBuffer returns b to the pool; b must not be used after.
func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		buffers.Put(b)
	}
}
