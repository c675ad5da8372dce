package pdf

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/adler32"
	"io"
	"testing"

	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// decompress inflates a zlib stream, failing the test on a bad
// checksum or a stream that does not end where z ends.
func decompress(t *testing.T, z []byte) []byte {
	t.Helper()
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("zlib header: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// outlineLen is the number of outline segments of r's glyph in f.
func outlineLen(t *testing.T, f *sfnt.Font, r rune) int {
	t.Helper()
	var buf sfnt.Buffer
	gid, err := f.GlyphIndex(&buf, r)
	if err != nil || gid == 0 {
		t.Fatalf("glyph of %q: %v %v", r, gid, err)
	}
	segs, err := f.LoadGlyph(&buf, gid, fixed.I(12), nil)
	if err != nil {
		t.Fatalf("load glyph %q: %v", r, err)
	}
	return len(segs)
}

func TestSubset(t *testing.T) {
	t.Parallel()
	fs, err := faces()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		runes   []rune
		present string // runes whose outlines the subset must have
		absent  string // runes whose outlines it must not have
	}{
		{"ASCII only", nil, "AZaz09{}~", "ŁΩЖé"},
		{"composite accents", []rune("éŁ"), "Aéaz", "ΩЖè"},
		{"Greek and Cyrillic", []rune("ΩЖж"), "AΩЖж", "ŁΣ"},
		{"a rune the font lacks", []rune("Ω世"), "Ω", "Ж"},
	}
	for k, fc := range fs {
		full, err := sfnt.Parse([][]byte{fontRegular, fontBold}[k])
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(fc.psName+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				var z bytes.Buffer
				size := fc.subsetter.subset(&z, tt.runes)
				font := decompress(t, z.Bytes())
				if len(font) != size {
					t.Errorf("subset says %d bytes, inflates to %d", size, len(font))
				}
				checkTrueType(t, font)
				f, err := sfnt.Parse(font)
				if err != nil {
					t.Fatalf("parse subset: %v", err)
				}
				if f.NumGlyphs() != fc.numGlyphs {
					t.Errorf("subset has %d glyphs, want the font's %d", f.NumGlyphs(), fc.numGlyphs)
				}
				// A composite glyph loads whole only with every part kept.
				for _, r := range tt.present {
					if got, want := outlineLen(t, f, r), outlineLen(t, full, r); got != want {
						t.Errorf("glyph of %q has %d segments, the font's %d", r, got, want)
					}
				}
				for _, r := range tt.absent {
					if n := outlineLen(t, f, r); n != 0 {
						t.Errorf("glyph of %q kept (%d segments), the subset does not use it", r, n)
					}
				}
			})
		}
	}
}

// checkTrueType checks the table checksums and the whole-font checksum
// of a TrueType font.
func checkTrueType(t *testing.T, font []byte) {
	t.Helper()
	if len(font)%4 != 0 {
		t.Fatalf("font length %d is not a multiple of 4", len(font))
	}
	n := int(binary.BigEndian.Uint16(font[4:]))
	for i := range n {
		rec := font[12+16*i:]
		sum, off, length := be32(rec, 4), int(be32(rec, 8)), int(be32(rec, 12))
		data := make([]byte, pad4(length))
		copy(data, font[off:off+length])
		if string(rec[:4]) == "head" {
			binary.BigEndian.PutUint32(data[8:], 0)
		}
		if got := checksum(data); got != sum {
			t.Errorf("table %s: checksum %08x, directory says %08x", rec[:4], got, sum)
		}
	}
	if got := checksum(font); got != 0xB1B0AFBA {
		t.Errorf("font checksum %08x, want B1B0AFBA", got)
	}
}

func TestSubsetterPrefix(t *testing.T) {
	t.Parallel()
	fs, err := faces()
	if err != nil {
		t.Fatal(err)
	}
	for _, fc := range fs {
		s := fc.subsetter
		// The Go fonts put printable ASCII first, so a subset of ASCII
		// and a few more characters compresses only the few more.
		if s.prefixEnd < 98 || len(s.always) != 0 {
			t.Errorf("%s: prefix ends at glyph %d with %d always-kept glyphs after it", fc.psName, s.prefixEnd, len(s.always))
		}
	}
}

func TestAdler32Combine(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("Łódź Ωmega 0123456789 "), 9000)
	for _, cut := range []int{0, 1, 5551, 65520, 65521, 65522, len(data) / 2, len(data)} {
		a, b := data[:cut], data[cut:]
		got := adler32Combine(adler32.Checksum(a), adler32.Checksum(b), len(b))
		if want := adler32.Checksum(data); got != want {
			t.Errorf("cut at %d: %08x, want %08x", cut, got, want)
		}
	}
}

func TestFaceCoversCodePages(t *testing.T) {
	t.Parallel()
	fs, err := faces()
	if err != nil {
		t.Fatal(err)
	}
	for _, fc := range fs {
		for _, enc := range []*encoding{encCP1252, encCP1250} {
			for c, r := range enc.runes {
				if r == 0 {
					continue
				}
				if _, ok := fc.glyphs[r]; !ok {
					t.Errorf("%s lacks %q (%s code %#x)", fc.psName, r, enc.path, c)
				}
			}
		}
		if len(fc.glyphs) < 700 {
			t.Errorf("%s maps %d runes, want the Go fonts' 709", fc.psName, len(fc.glyphs))
		}
	}
}
