package storage

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL error codes translated at the catalog's boundary.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
)

// translatePgError maps driver errors to this package's sentinels:
// no rows -> ErrNotFound, a unique violation -> ErrConflict (naming the
// constraint), a foreign key violation -> ErrNotFound (the referenced
// tenant is gone). Other errors are returned as they are.
func translatePgError(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgUniqueViolation:
			return fmt.Errorf("%w (%s)", ErrConflict, pgErr.ConstraintName)
		case pgForeignKeyViolation:
			return fmt.Errorf("%w (%s)", ErrNotFound, pgErr.ConstraintName)
		}
	}
	return err
}
