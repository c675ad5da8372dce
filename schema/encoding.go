package schema

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrNotUTF8 is wrapped by CheckEncoding's error for a database whose
// server encoding is not UTF8.
var ErrNotUTF8 = errors.New("server encoding is not UTF8")

// CheckEncoding returns an error wrapping ErrNotUTF8, naming the database
// and its encoding, when q's database was created with another server
// encoding than UTF8 (initdb -E, CREATE DATABASE ... ENCODING). Tenants'
// names, customers and invoice lines are in any script: a database in
// LATIN1 (or any other single-byte or national encoding) refuses text
// outside its character set with 22P05 at the first such tenant, and one
// in SQL_ASCII stores whatever bytes a client sends unchecked, so text an
// application wrote in another encoding reaches documents and emails as
// bytes that are not UTF-8. Neither can be changed in place: the fix is a
// dump restored into a database created with ENCODING 'UTF8'.
func CheckEncoding(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) error {
	var enc, db string
	if err := q.QueryRow(ctx, "SELECT pg_catalog.current_setting('server_encoding'), pg_catalog.current_database()").Scan(&enc, &db); err != nil {
		return fmt.Errorf("check encoding: %w", err)
	}
	if enc != "UTF8" {
		return fmt.Errorf("database %s: %w but %s: tenant text outside its character set fails or reaches documents garbled; "+
			"restore a dump of it into a database created with ENCODING 'UTF8' (CREATE DATABASE ... TEMPLATE template0 ENCODING 'UTF8')",
			db, ErrNotUTF8, enc)
	}
	return nil
}
