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

// APIKeyDisplayLen is how many leading characters of a key are kept as its
// APIKey.Prefix: "tk_" and 6 characters (36 of its 256 random bits), enough
// to tell a tenant's keys apart and far too few to guess the rest.
const APIKeyDisplayLen = len(APIKeyPrefix) + 6

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

// APIKeyDisplayPrefix returns the first APIKeyDisplayLen characters of a
// key, the part kept as APIKey.Prefix.
func APIKeyDisplayPrefix(key string) string {
	if len(key) < APIKeyDisplayLen {
		return key
	}
	return key[:APIKeyDisplayLen]
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
