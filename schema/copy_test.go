package schema

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// pauseTracer blocks the first query whose SQL contains match until
// release is closed; reached is closed when it blocks.
type pauseTracer struct {
	match   string
	reached chan struct{}
	release chan struct{}
	done    bool
}

func newPause(match string) *pauseTracer {
	return &pauseTracer{match: match, reached: make(chan struct{}), release: make(chan struct{})}
}

func (p *pauseTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !p.done && strings.Contains(d.SQL, p.match) {
		p.done = true
		close(p.reached)
		<-p.release
	}
	return ctx
}

func (p *pauseTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestCopyCreatesTheTargetOrLeavesIt: a copy whose target schema appears
// after it found none (another copy made it first) fails with
// ErrSchemaExists and leaves that schema as it is: it drops only a schema
// it created.
func TestCopyCreatesTheTargetOrLeavesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srcA, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	srcB, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dstURL := testenv.Postgres(t)
	dst, _ := newTestPool(t, dstURL, 0, nil)
	migrateTenant(t, srcA, "tenant_acme")
	migrateTenant(t, srcB, "tenant_acme")

	pause := newPause("pg_advisory_xact_lock(") // B's creating step, after it found no schema
	dstB, _ := newTestPool(t, dstURL, 0, func(c *pgxpool.Config) { c.ConnConfig.Tracer = pause })
	errB := make(chan error, 1)
	go func() {
		_, err := Copy(ctx, srcB, dstB, "tenant_acme")
		errB <- err
	}()
	<-pause.reached
	resA, err := Copy(ctx, srcA, dst, "tenant_acme")
	if err != nil {
		t.Fatalf("copy A: %v", err)
	}
	close(pause.release)
	if err := <-errB; !errors.Is(err, ErrSchemaExists) {
		t.Fatalf("copy B into a target copy A made meanwhile: %v, want ErrSchemaExists", err)
	}
	sums, err := Checksums(ctx, dst, "tenant_acme")
	if err != nil || !slices.Equal(sums, resA.Tables) {
		t.Fatalf("copy A's schema after copy B failed: %v, %v; want %v", sums, err, resA.Tables)
	}
}

// TestCopyReadsTheVersionUnderItsLock: a migration of the source that
// commits before the copy locked it is copied: the target is built at the
// version the source has under the copy's lock.
func TestCopyReadsTheVersionUnderItsLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srcURL := testenv.Postgres(t)
	src, _ := newTestPool(t, srcURL, 0, nil)
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	if _, err := Migrate(ctx, src, "tenant_acme", 3); err != nil {
		t.Fatal(err)
	}
	pause := newPause("pg_advisory_xact_lock_shared")
	srcCopy, _ := newTestPool(t, srcURL, 0, func(c *pgxpool.Config) { c.ConnConfig.Tracer = pause })
	type result struct {
		res CopyResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := Copy(ctx, srcCopy, dst, "tenant_acme")
		done <- result{res, err}
	}()
	<-pause.reached
	if _, err := Migrate(ctx, src, "tenant_acme", 0); err != nil {
		t.Fatal(err)
	}
	close(pause.release)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	srcV, _ := Version(ctx, src, "tenant_acme")
	dstV, _ := Version(ctx, dst, "tenant_acme")
	if r.res.Version != srcV || dstV != srcV {
		t.Fatalf("copy reports version %d and is at %d; the source is at %d", r.res.Version, dstV, srcV)
	}
}

// TestCopiedEnds: a copy's source stays locked against writes until the
// copy ends; Abort drops the copy and leaves the source, DropSource drops
// the source and leaves the copy (with the source's owner), and a write
// that waited meanwhile fails rather than landing in the dropped schema.
func TestCopiedEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	const owner = "tn_copiedendsxxxxxxxxxxxxxxx"
	if _, err := MigrateWith(ctx, src, "tenant_acme", MigrateOptions{Create: &Creation{Owner: owner}}); err != nil {
		t.Fatal(err)
	}

	c, err := BeginCopy(ctx, src, dst, "tenant_acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Exists(ctx, dst, "tenant_acme"); ok {
		t.Error("the copy is still in the target after Abort")
	}
	if _, err := src.Exec(ctx, `INSERT INTO tenant_acme.customers (name, email) VALUES ('kept', 'kept@acme.example')`); err != nil {
		t.Fatalf("the source after Abort: %v", err)
	}

	c, err = BeginCopy(ctx, src, dst, "tenant_acme")
	if err != nil {
		t.Fatal(err)
	}
	if c.Result.Rows() != 1 {
		t.Errorf("copied %d rows, want 1", c.Result.Rows())
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := src.Exec(ctx, `INSERT INTO tenant_acme.customers (name, email) VALUES ('late', 'late@acme.example')`)
		wrote <- err
	}()
	testenv.WaitFor(t, 30*time.Second, "the write to wait for the copy", func() bool {
		var n int
		err := src.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'customers' AND NOT l.granted`).Scan(&n)
		return err == nil && n > 0
	})
	if err := c.DropSource(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err == nil {
		t.Error("a write that waited for the copy was committed into the dropped source")
	}
	if ok, _ := Exists(ctx, src, "tenant_acme"); ok {
		t.Error("the source is still there after DropSource")
	}
	if _, got, err := Owner(ctx, dst, "tenant_acme"); err != nil || got != owner {
		t.Errorf("the copy's owner: %q, %v; want %q", got, err, owner)
	}
	if err := c.Release(ctx); err == nil {
		t.Error("a copy ended twice")
	}
}
