package storage

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidDocumentKey is returned for a document key that could leave
// its tenant's directory or is otherwise malformed.
var ErrInvalidDocumentKey = errors.New("invalid document key")

// MaxDocumentKeyLen bounds a document key, in bytes.
const MaxDocumentKeyLen = 255

// ValidateDocumentKey checks a document key: 1..MaxDocumentKeyLen bytes of
// [A-Za-z0-9._-/], relative, slash-separated, with no empty, "." or ".."
// segment (so no leading, trailing or doubled slash). Backslashes, NUL and
// every other byte are refused by the alphabet.
func ValidateDocumentKey(key string) error {
	if len(key) == 0 || len(key) > MaxDocumentKeyLen {
		return fmt.Errorf("%w: length %d, want 1..%d", ErrInvalidDocumentKey, len(key), MaxDocumentKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if !keyByte(key[i]) {
			return fmt.Errorf("%w: %q: byte %q at %d not in [A-Za-z0-9._/-]", ErrInvalidDocumentKey, key, key[i], i)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q: empty, \".\" or \"..\" segment", ErrInvalidDocumentKey, key)
		}
	}
	return nil
}

// keyByte reports whether b may appear in a document key.
func keyByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return b == '.' || b == '_' || b == '-' || b == '/'
}
