package tenancy_test

import (
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMoveToAnUnusableTargetIsRefusedUpFront: a move to a database whose
// URL's role may not create schemas there is refused before it changes
// anything, with the grant that fixes it (ErrMoveRefused wrapping
// placement.ErrMayNotCreateSchemas), instead of failing at the copy after
// the tenant's queue was paused; a target that does not answer fails as
// early (placement.ErrUnreachable), and so does one whose server answers
// but takes no writes (placement.ErrReadOnly: a replica's URL, a database
// set default_transaction_read_only), which failed only at the copy's
// CREATE SCHEMA (25006) after the pause and the move's audit entries.
// Either way the tenant stays where it
// is, active, its queue neither paused nor held by a move, and no audit
// entry is written.
func TestMoveToAnUnusableTargetIsRefusedUpFront(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	readOnly := testenv.Postgres(t)
	conn, err := pgx.Connect(t.Context(), readOnly)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "ALTER DATABASE "+pgx.Identifier{conn.Config().Database}.Sanitize()+
		" SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(t.Context())
	b := servicesOn(t, pool, catalog, docs, map[string]string{
		"nocreate": testenv.PostgresAs(t, false),
		"down":     "postgres://app@127.0.0.1:1/invoicing?connect_timeout=5",
		"readonly": readOnly,
	}, 2)
	tn := b.provision(t, "acme", tenantctx.DefaultDatabase)
	before, err := b.catalog.AuditEntries(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	opts := tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond}
	for _, tc := range []struct {
		to      string
		want    error
		refused bool
		says    string
	}{
		{"nocreate", placement.ErrMayNotCreateSchemas, true, "GRANT CREATE ON DATABASE"},
		{"down", placement.ErrUnreachable, false, "target database down"},
		{"readonly", placement.ErrReadOnly, false, "takes no writes"},
	} {
		_, err := b.svc.Move(b.ctx, tn.ID, tc.to, "test", opts)
		if !errors.Is(err, tc.want) || errors.Is(err, tenancy.ErrMoveRefused) != tc.refused || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Move to %s = %v; want %v (refused: %v) saying %q", tc.to, err, tc.want, tc.refused, tc.says)
		}
		now, err := b.catalog.TenantByID(b.ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if now.DatabaseName() != tenantctx.DefaultDatabase || now.Status != tenantctx.StatusActive || !exists(t, b.ctx, b.pool, tn.Schema) {
			t.Errorf("after the move to %s: tenant on %s, %s; want it on main, active, with its schema", tc.to, now.DatabaseName(), now.Status)
		}
		if q := inDefault(t, b.queue(t, tn.ID)); q.Paused || q.Moving {
			t.Errorf("after the move to %s: queue paused %v, moving %v; want neither", tc.to, q.Paused, q.Moving)
		}
		after, err := b.catalog.AuditEntries(b.ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("after the move to %s: audit entries %+v; want none added", tc.to, after[len(before):])
		}
	}
}

// TestMoveTargetPassingItsCheckIsUsableAgain: a TENANT_DATABASES database
// found unusable (down at start, its role then found without CREATE)
// that the operator granted CREATE since is usable again as soon as a
// move's check of it passes (placement.Registry.CheckTarget), with the
// info line of a re-check that passes: new tenants are placed on it at
// once, by name too, not only after its next re-check a minute later
// (placement.Options.RecheckInterval).
func TestMoveTargetPassingItsCheckIsUsableAgain(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	ctx := t.Context()
	srv := testenv.StartPostgres(t)
	lateURL := srv.DatabaseAs(t, false) // a role that may only connect
	srv.Stop(t)
	log := &testenv.LogBuffer{}
	pools := placement.New(placement.Options{MainPool: pool, URLs: map[string]string{"late": lateURL},
		Catalog: catalog, MaxConns: 2, Logger: slog.New(slog.NewTextHandler(log, nil))})
	t.Cleanup(func() { _ = pools.Close() })
	if err := pools.CheckConfigured(ctx); err != nil {
		t.Fatalf("CheckConfigured with late down: %v", err)
	}
	if err := pools.Register(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Start(t)
	b := servicesWith(t, pool, catalog, docs, pools)
	if _, err := pools.Choose(ctx, "late"); !errors.Is(err, placement.ErrMayNotCreateSchemas) {
		t.Fatalf("Choose(late) = %v; want its missing privilege", err)
	}
	tn := b.provision(t, "acme", tenantctx.DefaultDatabase)
	opts := tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond}
	// Not granted yet: refused up front, late stays unusable, quietly.
	if _, err := b.svc.Move(ctx, tn.ID, "late", "test", opts); !errors.Is(err, tenancy.ErrMoveRefused) || !errors.Is(err, placement.ErrMayNotCreateSchemas) {
		t.Fatalf("Move to late before the grant = %v; want ErrMoveRefused, its missing privilege", err)
	}
	if err := pools.Unusable()["late"]; !errors.Is(err, placement.ErrMayNotCreateSchemas) {
		t.Fatalf("Unusable()[late] = %v after a refused move; want its missing privilege", err)
	}

	u, err := url.Parse(lateURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "GRANT CREATE ON DATABASE "+pgx.Identifier{u.Path[1:]}.Sanitize()+" TO "+pgx.Identifier{u.User.Username()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Move(ctx, tn.ID, "late", "test", opts); err != nil {
		t.Fatalf("Move to late once granted: %v", err)
	}
	if u := pools.Unusable(); len(u) != 0 {
		t.Errorf("Unusable() = %v after the move's check of late passed; want none", u)
	}
	if name, err := pools.Choose(ctx, "late"); err != nil || name != "late" {
		t.Errorf("Choose(late) = %q, %v after the move's check passed; want late", name, err)
	}
	if n := strings.Count(log.String(), "passed its check again"); n != 1 {
		t.Errorf("%d lines saying late passed its check again, want one:\n%s", n, log)
	}
}
