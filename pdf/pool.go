package pdf

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/adler32"
	"io"
	"sync"
)

// A new zlib writer allocates and zeroes about a megabyte of tables; fpdf
// makes one for every stream it compresses. The renderer turns fpdf's
// compression off and compresses with these writers instead, which Reset
// reuses without that cost. BestSpeed keeps Reset cheap (the other
// levels clear their hash tables on every Reset) and is the level fpdf
// uses. The output does not depend on what a writer compressed before.
var flateWriters = sync.Pool{
	New: func() any {
		w, _ := flate.NewWriter(io.Discard, flate.BestSpeed) // the level is valid
		return w
	},
}

// zlibHeader starts a zlib stream of deflate data with a 32 KiB window.
var zlibHeader = []byte{0x78, 0x01}

// compressTo appends data compressed in the zlib format (what PDF's
// FlateDecode reads) to dst.
func compressTo(dst *bytes.Buffer, data []byte) error {
	zw := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(zw)
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
