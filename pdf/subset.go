package pdf

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/adler32"
	"slices"
)

// A subset of a face keeps every glyph id, metric and the cmap as they
// are and only empties the outlines of the glyphs a document does not
// use: glyf, loca and the checksums change, nothing else. Most of the font
// program is then the same in every subset, so a subsetter lays the file
// out in three parts:
//
//	offset table, table directory, head, loca    stored, per subset
//	the other tables, glyf's outlines up to the  deflated once per process
//	first glyph a subset may leave out
//	the rest of glyf: the document's own glyphs  stored, per subset
//
// The zlib stream of a subset is a header, the three parts as deflate
// blocks (the middle one ends with a sync flush, so each part starts on a
// byte boundary) and the Adler-32 of the whole, combined from the parts'.
// Nothing is compressed per subset: deflating a document's few kilobytes
// of glyphs cost several times the rest of the render, and saved a sixth
// of the font's size at best.

// subsetter holds what every subset of one face shares.
type subsetter struct {
	fc       *face
	locaLong bool
	head     []byte // head with indexToLocFormat set, checkSumAdjustment zero

	// File layout: head, loca, the constant tables, glyf. The directory
	// lists them by tag, as fc.tables does.
	offsets []int // file offset of each table, by index into fc.tables
	dirLen  int   // length of the offset table and directory
	headAt  int   // offset of head
	locaAt  int   // offset of loca
	constAt int   // first byte of the part deflated once
	glyfAt  int   // offset of glyf

	// prefixEnd splits the glyphs: the outlines of those below it are the
	// same in every subset (kept, or never used by any character), so
	// they belong to the constant part.
	prefixEnd  int
	prefixLoca []int // glyf offsets of glyphs 0 to prefixEnd
	prefixSum  uint32
	always     []uint16 // glyphs from prefixEnd on that every subset keeps

	constZ     []byte   // the constant part, deflated and sync-flushed
	constLen   int      // its length uncompressed
	constAdler uint32   // its Adler-32
	sums       []uint32 // checksums of the constant tables, by index
}

// newSubsetter prepares the subsets of fc. Every subset keeps .notdef
// and the glyphs of printable ASCII (and what they are built from).
func newSubsetter(fc *face) *subsetter {
	s := &subsetter{fc: fc}
	n := fc.numGlyphs

	// Glyphs of every subset, and glyphs any subset can use.
	base := make([]bool, n)
	base[0] = true
	reachable := make([]bool, n)
	mark := func(set []bool, gid uint16) {
		set[gid] = true
		for _, c := range fc.components[gid] {
			set[c] = true
		}
	}
	for r, g := range fc.glyphs {
		mark(reachable, g.id)
		if r >= 0x20 && r < 0x7F {
			mark(base, g.id)
		}
	}
	s.prefixEnd = n
	for gid := range n {
		if reachable[gid] && !base[gid] {
			s.prefixEnd = gid
			break
		}
	}
	for gid := s.prefixEnd; gid < n; gid++ {
		if base[gid] {
			s.always = append(s.always, uint16(gid))
		}
	}

	// glyf up to prefixEnd; the worst case glyf decides loca's format.
	var prefix []byte
	s.prefixLoca = make([]int, s.prefixEnd+1)
	worst := 0
	for gid := range n {
		data := fc.glyphData(uint16(gid))
		worst += pad4(len(data))
		if gid < s.prefixEnd {
			if base[gid] {
				prefix = append(prefix, data...)
				prefix = append(prefix, make([]byte, pad4(len(data))-len(data))...)
			}
			s.prefixLoca[gid+1] = len(prefix)
		}
	}
	s.prefixSum = checksum(prefix)
	s.locaLong = fc.locaLong || worst/2 > 0xFFFF
	s.head = slices.Clone(fc.table("head"))
	binary.BigEndian.PutUint32(s.head[8:], 0)
	if s.locaLong {
		binary.BigEndian.PutUint16(s.head[50:], 1)
	}

	// File layout.
	s.dirLen = 12 + 16*len(fc.tables)
	s.offsets = make([]int, len(fc.tables))
	off := s.dirLen
	place := func(i, length int) {
		s.offsets[i] = off
		off += pad4(length)
	}
	glyf := -1
	for _, tag := range []string{"head", "loca"} {
		for i, t := range fc.tables {
			if t.tag == tag {
				place(i, s.tableLen(i))
			}
		}
	}
	s.headAt = s.dirLen
	s.locaAt = s.headAt + pad4(len(s.head))
	s.constAt = off
	s.sums = make([]uint32, len(fc.tables))
	var constRaw []byte
	for i, t := range fc.tables {
		switch t.tag {
		case "head", "loca":
		case "glyf":
			glyf = i
		default:
			place(i, len(t.data))
			constRaw = append(constRaw, t.data...)
			constRaw = append(constRaw, make([]byte, pad4(len(t.data))-len(t.data))...)
			s.sums[i] = checksum(constRaw[len(constRaw)-pad4(len(t.data)):])
		}
	}
	s.glyfAt = off
	place(glyf, 0)
	constRaw = append(constRaw, prefix...)

	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestCompression) // the level is valid
	zw.Write(constRaw)                                  // a bytes.Buffer does not fail
	zw.Flush()
	s.constZ, s.constLen, s.constAdler = z.Bytes(), len(constRaw), adler32.Checksum(constRaw)
	return s
}

// tableLen is the length of the per-subset table i other than glyf.
func (s *subsetter) tableLen(i int) int {
	switch s.fc.tables[i].tag {
	case "head":
		return len(s.head)
	case "loca":
		if s.locaLong {
			return 4 * (s.fc.numGlyphs + 1)
		}
		return 2 * (s.fc.numGlyphs + 1)
	}
	return len(s.fc.tables[i].data)
}

// subset appends to dst, in the zlib format, the font program that holds
// the outlines of runes' glyphs (and of .notdef and printable ASCII) and
// returns its length uncompressed. Runes the font lacks are ignored.
func (s *subsetter) subset(dst *bytes.Buffer, runes []rune) int {
	fc := s.fc
	keep := make([]bool, fc.numGlyphs)
	for _, g := range s.always {
		keep[g] = true
	}
	for _, r := range runes {
		if g, ok := fc.glyphs[r]; ok {
			keep[g.id] = true
			for _, c := range fc.components[g.id] {
				keep[c] = true
			}
		}
	}

	// The front part (offset table, directory, head, loca) and the rest
	// of glyf, writing loca on the way.
	front := make([]byte, s.constAt)
	loca := front[s.locaAt:]
	putLoca := func(gid, off int) {
		if s.locaLong {
			binary.BigEndian.PutUint32(loca[4*gid:], uint32(off))
		} else {
			binary.BigEndian.PutUint16(loca[2*gid:], uint16(off/2))
		}
	}
	for gid, off := range s.prefixLoca {
		putLoca(gid, off)
	}
	rest := getBuffer()
	defer putBuffer(rest)
	var pad [3]byte
	prefixLen := s.prefixLoca[s.prefixEnd]
	for gid := s.prefixEnd; gid < fc.numGlyphs; gid++ {
		if keep[gid] {
			data := fc.glyphData(uint16(gid))
			rest.Write(data)
			rest.Write(pad[:pad4(len(data))-len(data)])
		}
		putLoca(gid+1, prefixLen+rest.Len())
	}
	glyfLen := prefixLen + rest.Len()

	sums := slices.Clone(s.sums)
	lengths := make([]int, len(fc.tables))
	for i, t := range fc.tables {
		at := s.offsets[i]
		switch t.tag {
		case "head":
			lengths[i] = copy(front[at:], s.head)
			sums[i] = checksum(front[at : at+pad4(lengths[i])])
		case "loca":
			lengths[i] = s.tableLen(i)
			sums[i] = checksum(front[at : at+pad4(lengths[i])])
		case "glyf":
			lengths[i] = glyfLen
			sums[i] = s.prefixSum + checksum(rest.Bytes())
		default:
			lengths[i] = len(t.data)
		}
	}
	n := len(fc.tables)
	binary.BigEndian.PutUint32(front[0:], 0x00010000)
	binary.BigEndian.PutUint16(front[4:], uint16(n))
	sel := 0
	for 1<<(sel+1) <= n {
		sel++
	}
	binary.BigEndian.PutUint16(front[6:], uint16(16<<sel))
	binary.BigEndian.PutUint16(front[8:], uint16(sel))
	binary.BigEndian.PutUint16(front[10:], uint16(16*n-16<<sel))
	var total uint32
	for i, t := range fc.tables {
		rec := front[12+16*i:]
		copy(rec, t.tag)
		binary.BigEndian.PutUint32(rec[4:], sums[i])
		binary.BigEndian.PutUint32(rec[8:], uint32(s.offsets[i]))
		binary.BigEndian.PutUint32(rec[12:], uint32(lengths[i]))
		total += sums[i]
	}
	total += checksum(front[:s.dirLen])
	binary.BigEndian.PutUint32(front[s.headAt+8:], 0xB1B0AFBA-total) // head's checkSumAdjustment

	// zlib: header, the three parts, Adler-32.
	dst.Write(zlibHeader)
	writeStored(dst, front, false)
	dst.Write(s.constZ)
	writeStored(dst, rest.Bytes(), true)
	sum := adler32Combine(adler32.Checksum(front), s.constAdler, s.constLen)
	sum = adler32Combine(sum, adler32.Checksum(rest.Bytes()), rest.Len())
	dst.Write(binary.BigEndian.AppendUint32(dst.AvailableBuffer(), sum))
	return s.glyfAt + glyfLen
}

// writeStored appends data to dst as stored (uncompressed) deflate
// blocks, the last one final if final is true. dst must be at a byte
// boundary of the deflate stream, as it is after a sync flush.
func writeStored(dst *bytes.Buffer, data []byte, final bool) {
	for {
		n := min(len(data), 0xFFFF)
		var bfinal byte
		if final && n == len(data) {
			bfinal = 1
		}
		dst.Write([]byte{bfinal, byte(n), byte(n >> 8), ^byte(n), ^byte(n >> 8)})
		dst.Write(data[:n])
		data = data[n:]
		if len(data) == 0 {
			return
		}
	}
}

// adler32Combine returns the Adler-32 of the concatenation of two byte
// sequences whose checksums are a1 and a2, the second len2 bytes long
// (zlib's adler32_combine).
func adler32Combine(a1, a2 uint32, len2 int) uint32 {
	const base = 65521
	rem := uint32(len2 % base)
	sum1 := a1 & 0xFFFF
	sum2 := rem * sum1 % base
	sum1 += a2&0xFFFF + base - 1
	sum2 += a1>>16 + a2>>16 + base - rem
	if sum1 >= base {
		sum1 -= base
	}
	if sum1 >= base {
		sum1 -= base
	}
	if sum2 >= base<<1 {
		sum2 -= base << 1
	}
	if sum2 >= base {
		sum2 -= base
	}
	return sum2<<16 | sum1
}
