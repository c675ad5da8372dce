package schema

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// outputSettings are a server's defaults of the settings that change how
// values are written as text (and, for DateStyle's field order, how they
// are read).
type outputSettings struct {
	dateStyle, intervalStyle, timeZone, extraFloatDigits, byteaOutput string
}

// startServerWith starts a dedicated PostgreSQL server whose defaults are
// s (ALTER SYSTEM, then a reload), waits until a new session sees them,
// and returns a pool on a fresh database of it.
func startServerWith(t *testing.T, s outputSettings) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	srv := testenv.StartPostgres(t)
	admin, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, set := range [][2]string{
		{"DateStyle", s.dateStyle}, {"IntervalStyle", s.intervalStyle}, {"TimeZone", s.timeZone},
		{"extra_float_digits", s.extraFloatDigits}, {"bytea_output", s.byteaOutput},
	} {
		if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET %s = '%s'", set[0], set[1])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	pool, _ := newTestPool(t, srv.CreateDatabase(t), 0, nil)
	want := s.dateStyle
	testenv.WaitFor(t, time.Minute, "the server's new DateStyle "+want, func() bool {
		// A new session each time: a reload reaches sessions as they start.
		c, err := pgx.Connect(ctx, srv.URL())
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		var got string
		return c.QueryRow(ctx, "SHOW DateStyle").Scan(&got) == nil && got == want
	})
	return pool
}

// typedValues is a table of the types whose text form depends on session
// settings, added to the tenant schema for this test.
const typedValues = `CREATE TABLE typed_values (
	id   int PRIMARY KEY,
	d    date,
	ts   timestamp,
	tstz timestamptz,
	iv   interval,
	f8   float8,
	f4   real,
	b    bytea
)`

// typedRow is one row of typed_values, read in binary (whatever the
// session's text settings).
type typedRow struct {
	ID   int32
	D    pgtype.Date
	TS   pgtype.Timestamp
	TSTZ pgtype.Timestamptz
	IV   pgtype.Interval
	F8   string // the float's bits: NaN equals NaN
	F4   string
	B    []byte
}

// readTyped returns the rows of schemaName.typed_values by id.
func readTyped(t *testing.T, pool *pgxpool.Pool, schemaName string) []typedRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT id, d, ts, tstz, iv, f8, f4, b FROM "+
		pgx.Identifier{schemaName, "typed_values"}.Sanitize()+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (typedRow, error) {
		var v typedRow
		var f8 pgtype.Float8
		var f4 pgtype.Float4
		err := r.Scan(&v.ID, &v.D, &v.TS, &v.TSTZ, &v.IV, &f8, &f4, &v.B)
		v.TSTZ.Time = v.TSTZ.Time.UTC() // the instant, not the client's zone
		v.F8 = fmt.Sprintf("%t %#x %v", f8.Valid, math.Float64bits(f8.Float64), f8.Float64)
		v.F4 = fmt.Sprintf("%t %#x %v", f4.Valid, math.Float32bits(f4.Float32), f4.Float32)
		return v, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCopyBetweenServersWithOtherOutputSettings: a copy between two
// servers whose defaults write dates, times, intervals, floats and bytea
// differently (DateStyle 'SQL, DMY' against 'Postgres, MDY', in which
// 01/03/2026 is another day; three time zones; IntervalStyle sql_standard
// against iso_8601; floats rounded to 15 digits; bytea as escapes) copies
// every value exactly, in both directions.
func TestCopyBetweenServersWithOtherOutputSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := startServerWith(t, outputSettings{"SQL, DMY", "sql_standard", "America/New_York", "0", "escape"})
	b := startServerWith(t, outputSettings{"Postgres, MDY", "iso_8601", "Asia/Kolkata", "1", "hex"})

	const name = "tenant_typed"
	set := append(slices.Clip(embedded), Migration{Version: len(embedded) + 1, Name: "typed_values", sql: typedValues})
	if _, err := migrateWith(ctx, a, name, 0, set, createAnything); err != nil {
		t.Fatal(err)
	}
	// Written with ISO literals under fixed settings, so what the source
	// holds does not depend on its defaults either.
	err := pgx.BeginFunc(ctx, a, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, textSettings); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO tenant_typed.typed_values VALUES
			(1, '2026-03-01', '2026-03-01 12:34:56.789012', '2026-03-01 12:34:56.789012+00',
			    '1 year 2 mons -3 days +04:05:06.789', 0.1, 0.1, '\x00ff5c0a0d27'),
			(2, '2026-12-31', '1999-01-02 03:04:05', '2026-07-04 23:59:59.5+05:30',
			    '-1 day +02:03:04', 1.0/3, 1.0/3, '\x'),
			(3, '0044-03-15 BC', '0044-03-15 12:00:00 BC', '1900-01-01 00:00:00+01:53:28',
			    '-1 years -2 mons +3 days -04:05:06.000001', 1e-300, 3.4e38, '\x5c5c'),
			(4, 'infinity', '-infinity', 'infinity', '0', 'NaN', '-Infinity', NULL),
			(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := readTyped(t, a, name)
	if len(want) != 5 {
		t.Fatalf("source holds %d rows, want 5", len(want))
	}
	if d := want[0].D.Time; d.Month() != time.March || d.Day() != 1 {
		t.Fatalf("source row 1 date %v, want 2026-03-01", d)
	}

	for _, dir := range []struct {
		name     string
		src, dst *pgxpool.Pool
	}{{"SQL DMY to Postgres MDY", a, b}, {"Postgres MDY to SQL DMY", b, a}} {
		c, err := beginCopy(ctx, dir.src, dir.dst, name, set)
		if err != nil {
			t.Fatalf("%s: copy: %v", dir.name, err)
		}
		if err := c.DropSource(ctx); err != nil {
			t.Fatalf("%s: drop the source: %v", dir.name, err)
		}
		if got := readTyped(t, dir.dst, name); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: copied rows\n%+v\nwant\n%+v", dir.name, got, want)
		}
	}
}
