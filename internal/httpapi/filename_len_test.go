package httpapi

import (
	"mime"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDownloadFilenameFitsAFileSystem: the download's file name stays
// within what file systems take (255 bytes on ext4, APFS, NTFS's UTF-16
// aside), whatever script the invoice number is in: 100 characters of a
// 3- or 4-byte script were 300-400 bytes, which a browser cannot save
// under that name. Both names stay valid UTF-8, end in ".pdf", and keep
// as much of the number as fits.
func TestDownloadFilenameFitsAFileSystem(t *testing.T) {
	for _, number := range []string{
		strings.Repeat("請求書", 40),         // 3 bytes a character
		strings.Repeat("\U00020000", 120), // 4 bytes (CJK extension B)
		strings.Repeat("Ωmega-", 30),      // 2 and 1
		strings.Repeat("e\u0301", 150),    // letter and combining mark
		strings.Repeat("A", 300),
	} {
		cd := contentDisposition(number, 7)
		_, params, err := mime.ParseMediaType(cd)
		if err != nil {
			t.Fatalf("number %.20q: %q does not parse: %v", number, cd, err)
		}
		for _, name := range []string{params["filename"], pdfFilename(number, 7, false)} {
			if len(name) > maxFilenameBytes || !utf8.ValidString(name) || !strings.HasSuffix(name, ".pdf") {
				t.Errorf("number %.20q: file name of %d bytes (valid UTF-8 %v): %.40q...; want at most %d bytes ending in .pdf",
					number, len(name), utf8.ValidString(name), name, maxFilenameBytes)
			}
		}
		if name := params["filename"]; len(name) < 60 {
			t.Errorf("number %.20q: file name %q keeps too little of the number", number, name)
		}
	}
}
