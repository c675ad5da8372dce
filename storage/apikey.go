package storage

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// APIKeyPrefix starts every tenant API key.
const APIKeyPrefix = "tk_"

// apiKeyBytes is the number of random bytes in a key.
const apiKeyBytes = 32

// maxAPIKeyLen bounds what HashAPIKey accepts: prefix plus 43 base64url
// characters, with room to spare. Longer input is rejected before hashing.
const maxAPIKeyLen = 128

// NewAPIKey returns a fresh API key and its hash. Store only the hash.
func NewAPIKey() (key, hash string) {
	var b [apiKeyBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key)
}

// HashAPIKey returns the lowercase hex SHA-256 of key, the form stored in
// tenancy.api_keys.key_hash.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// CheckAPIKeyFormat rejects strings that cannot be keys (wrong prefix,
// length or alphabet) before any lookup.
func CheckAPIKeyFormat(key string) error {
	if len(key) > maxAPIKeyLen || !strings.HasPrefix(key, APIKeyPrefix) {
		return fmt.Errorf("api key: %w", ErrNotFound)
	}
	raw, err := base64.RawURLEncoding.DecodeString(key[len(APIKeyPrefix):])
	if err != nil || len(raw) != apiKeyBytes {
		return fmt.Errorf("api key: %w", ErrNotFound)
	}
	return nil
}
