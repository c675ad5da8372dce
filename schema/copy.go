package schema

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSchemaExists: Copy found the schema in the target database already
// (a leftover, or another tenant's); it leaves it alone.
var ErrSchemaExists = errors.New("schema already exists in the target database")

// ErrCopyMismatch: the copy's row counts or checksums differ from the
// source's.
var ErrCopyMismatch = errors.New("copied schema differs from its source")

// TableSum is a table's row count and checksum: md5 over the sorted md5s
// of its rows' text, read with fixed output settings (UTC, ISO dates), so
// equal contents give equal sums on any server.
type TableSum struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	MD5   string `json:"md5"`
}

// CopyResult is what Copy did.
type CopyResult struct {
	Schema  string     `json:"schema"`
	Version int        `json:"version"`
	Tables  []TableSum `json:"tables"`
}

// Rows sums the tables' rows.
func (r CopyResult) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Rows
	}
	return n
}

// migrationsTable is the version table Migrate keeps in every schema; Copy
// creates it through Migrate, so it is not copied.
const migrationsTable = "schema_migrations"

// Copy copies schemaName with its rows from the database of src into the
// database of dst (typically another server): it creates the schema in dst
// by the normal migrations, to the source's version (Migrate), then copies
// each table in foreign-key order with COPY ... TO STDOUT streamed into
// COPY ... FROM STDIN (pgx's CopyFrom, text format: every type round-trips
// exactly), all in one target transaction, sets the sequences to the
// source's positions, and verifies each table's row count and checksum
// (Checksums) against the source.
//
// The source is read in one REPEATABLE READ transaction holding the
// tenant's lock in shared mode (a Migrate or Drop of the source waits);
// the caller keeps writers away (the tenant's queue paused). Statements are
// schema-qualified: no search_path is set on either side.
//
// A schema already in dst is ErrSchemaExists and left alone. On any other
// failure the partial copy in dst is dropped, and the source is untouched.
func Copy(ctx context.Context, src, dst *pgxpool.Pool, schemaName string) (res CopyResult, err error) {
	res.Schema = schemaName
	quoted, err := quoteSchema(schemaName)
	if err != nil {
		return res, fmt.Errorf("copy schema: %w", err)
	}
	exists, err := Exists(ctx, dst, schemaName)
	if err != nil {
		return res, fmt.Errorf("copy schema %s: %w", schemaName, err)
	}
	if exists {
		return res, fmt.Errorf("copy schema %s: %w", schemaName, ErrSchemaExists)
	}
	version, err := Version(ctx, src, schemaName)
	if err != nil {
		return res, fmt.Errorf("copy schema %s: %w", schemaName, err)
	}
	if version == 0 {
		return res, fmt.Errorf("copy schema %s: the source schema does not exist", schemaName)
	}
	res.Version = version
	defer func() {
		if err != nil {
			if derr := Drop(context.WithoutCancel(ctx), dst, schemaName); derr != nil {
				err = errors.Join(err, fmt.Errorf("drop the partial copy: %w", derr))
			}
		}
	}()
	if _, err := Migrate(ctx, dst, schemaName, version); err != nil {
		return res, fmt.Errorf("copy schema %s: create it in the target: %w", schemaName, err)
	}

	srcTx, err := src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return res, fmt.Errorf("copy schema %s: begin on the source: %w", schemaName, err)
	}
	defer srcTx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only; the result does not matter
	if _, err := srcTx.Exec(ctx, sharedLockSQL, lockNamespace, schemaName); err != nil {
		return res, fmt.Errorf("copy schema %s: lock the source: %w", schemaName, err)
	}
	tables, err := copyOrder(ctx, srcTx, schemaName)
	if err != nil {
		return res, fmt.Errorf("copy schema %s: %w", schemaName, err)
	}
	err = pgx.BeginFunc(ctx, dst, func(dstTx pgx.Tx) error {
		if _, err := dstTx.Exec(ctx, lockSQL, lockNamespace, schemaName); err != nil {
			return fmt.Errorf("lock the target: %w", err)
		}
		for _, tbl := range tables {
			if err := copyTable(ctx, srcTx, dstTx, quoted, schemaName, tbl); err != nil {
				return err
			}
		}
		return copySequences(ctx, srcTx, dstTx, quoted, schemaName)
	})
	if err != nil {
		return res, fmt.Errorf("copy schema %s: %w", schemaName, err)
	}
	srcSums, err := checksums(ctx, srcTx, schemaName)
	if err != nil {
		return res, fmt.Errorf("copy schema %s: checksum the source: %w", schemaName, err)
	}
	dstSums, err := Checksums(ctx, dst, schemaName)
	if err != nil {
		return res, fmt.Errorf("copy schema %s: checksum the copy: %w", schemaName, err)
	}
	if !slices.Equal(srcSums, dstSums) {
		return res, fmt.Errorf("copy schema %s: %w: source %v, copy %v", schemaName, ErrCopyMismatch, srcSums, dstSums)
	}
	res.Tables = srcSums
	return res, nil
}

// copyOrder lists the schema's tables (but the version table) so that a
// table comes after the tables its foreign keys reference; among
// independent tables, by name.
func copyOrder(ctx context.Context, q pgx.Tx, schemaName string) ([]string, error) {
	tables, err := listTables(ctx, q, schemaName)
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `
		SELECT c.relname, r.relname
		  FROM pg_catalog.pg_constraint k
		  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
		  JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
		 WHERE k.contype = 'f' AND n.nspname = $1 AND rn.nspname = $1 AND c.oid <> r.oid`, schemaName)
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	deps := map[string][]string{}
	var from, to string
	if _, err := pgx.ForEachRow(rows, []any{&from, &to}, func() error {
		deps[from] = append(deps[from], to)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(t string) error {
		switch state[t] {
		case 1:
			return fmt.Errorf("foreign keys form a cycle through %s", t)
		case 2:
			return nil
		}
		state[t] = 1
		for _, d := range deps[t] {
			if slices.Contains(tables, d) {
				if err := visit(d); err != nil {
					return err
				}
			}
		}
		state[t] = 2
		order = append(order, t)
		return nil
	}
	for _, t := range tables {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// listTables lists the ordinary tables of the schema but the version
// table, by name.
func listTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, schemaName string) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT c.relname FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> $2
		 ORDER BY c.relname COLLATE "C"`, schemaName, migrationsTable)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return tables, nil
}

// copyTable streams one table from srcTx into dstTx: COPY TO STDOUT on
// the source connection piped into CopyFrom on the target's, over the
// columns that are not generated.
func copyTable(ctx context.Context, srcTx, dstTx pgx.Tx, quoted, schemaName, table string) error {
	rows, err := srcTx.Query(ctx, `
		SELECT a.attname FROM pg_catalog.pg_attribute a
		  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		 ORDER BY a.attnum`, schemaName, table)
	if err != nil {
		return fmt.Errorf("list columns of %s: %w", table, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list columns of %s: %w", table, err)
	}
	quotedCols := make([]string, len(cols))
	for i, c := range cols {
		quotedCols[i] = pgx.Identifier{c}.Sanitize()
	}
	target := quoted + "." + pgx.Identifier{table}.Sanitize() + " (" + strings.Join(quotedCols, ", ") + ")"

	pr, pw := io.Pipe()
	outErr := make(chan error, 1)
	go func() {
		_, err := srcTx.Conn().PgConn().CopyTo(ctx, pw, "COPY "+target+" TO STDOUT")
		pw.CloseWithError(err)
		outErr <- err
	}()
	_, inErr := dstTx.Conn().PgConn().CopyFrom(ctx, pr, "COPY "+target+" FROM STDIN")
	pr.CloseWithError(errors.New("copy in ended"))
	if err := <-outErr; err != nil {
		return fmt.Errorf("copy %s out of the source: %w", table, err)
	}
	if inErr != nil {
		return fmt.Errorf("copy %s into the target: %w", table, inErr)
	}
	return nil
}

// copySequences sets every sequence of the schema in the target to the
// source's position.
func copySequences(ctx context.Context, srcTx, dstTx pgx.Tx, quoted, schemaName string) error {
	rows, err := srcTx.Query(ctx, `
		SELECT c.relname FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY c.relname COLLATE "C"`, schemaName)
	if err != nil {
		return fmt.Errorf("list sequences: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list sequences: %w", err)
	}
	for _, seq := range seqs {
		name := quoted + "." + pgx.Identifier{seq}.Sanitize()
		var last int64
		var called bool
		if err := srcTx.QueryRow(ctx, "SELECT last_value, is_called FROM "+name).Scan(&last, &called); err != nil {
			return fmt.Errorf("read sequence %s: %w", seq, err)
		}
		if _, err := dstTx.Exec(ctx, "SELECT pg_catalog.setval($1::regclass, $2, $3)", name, last, called); err != nil {
			return fmt.Errorf("set sequence %s: %w", seq, err)
		}
	}
	return nil
}

// checksumSettings fix the text form of rows for checksums, whatever the
// server's or role's defaults (SET LOCAL: they end with the transaction).
const checksumSettings = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'`

// Checksums returns every table's row count and checksum (TableSum) in
// table name order, the version table excluded.
func Checksums(ctx context.Context, pool *pgxpool.Pool, schemaName string) ([]TableSum, error) {
	if _, err := quoteSchema(schemaName); err != nil {
		return nil, fmt.Errorf("checksums: %w", err)
	}
	var sums []TableSum
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		sums, err = checksums(ctx, tx, schemaName)
		return err
	})
	return sums, err
}

// checksums is Checksums inside tx.
func checksums(ctx context.Context, tx pgx.Tx, schemaName string) ([]TableSum, error) {
	if _, err := tx.Exec(ctx, checksumSettings); err != nil {
		return nil, fmt.Errorf("checksum settings: %w", err)
	}
	tables, err := listTables(ctx, tx, schemaName)
	if err != nil {
		return nil, err
	}
	quoted := pgx.Identifier{schemaName}.Sanitize()
	sums := make([]TableSum, 0, len(tables))
	for _, table := range tables {
		s := TableSum{Table: table}
		err := tx.QueryRow(ctx, `SELECT count(*), coalesce(md5(string_agg(md5(r::text), '' ORDER BY md5(r::text) COLLATE "C")), '')
			FROM `+quoted+"."+pgx.Identifier{table}.Sanitize()+` AS r`).Scan(&s.Rows, &s.MD5)
		if err != nil {
			return nil, fmt.Errorf("checksum %s: %w", table, err)
		}
		sums = append(sums, s)
	}
	return sums, nil
}
