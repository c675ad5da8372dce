package tenantctx

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// DefaultDatabase is the name of the tenant database DATABASE_URL points
// to; it is always registered, and tenants are placed there unless told
// otherwise.
const DefaultDatabase = "main"

// ErrInvalidDatabase reports a malformed tenant database name.
var ErrInvalidDatabase = errors.New("invalid tenant database name")

// databaseName: lowercase letters, digits, '-' and '_', starting with a
// letter, at most 63 bytes.
var databaseName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// ValidateDatabaseName checks the name of a tenant database (the catalog's
// name for a registered PostgreSQL database, not its dbname). Its error
// quotes the name, unless it holds ':', '@', '/' or '=': then it is a
// connection string (a URL given where its name goes, `enqueue db add
// URL NAME`), whose password must not reach the output.
func ValidateDatabaseName(name string) error {
	if databaseName.MatchString(name) {
		return nil
	}
	if strings.ContainsAny(name, ":@/=") {
		return fmt.Errorf("%w: got a connection string (not quoted: it may hold a password), want a name such as eu2 ([a-z][a-z0-9_-]*, at most 63 bytes)", ErrInvalidDatabase)
	}
	return fmt.Errorf("%w: %.70q (want [a-z][a-z0-9_-]*, at most 63 bytes)", ErrInvalidDatabase, name)
}
