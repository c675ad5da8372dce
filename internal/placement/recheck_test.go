package placement_test

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// asAdmin runs sql as srv's superuser.
func asAdmin(t *testing.T, srv *testenv.PostgresServer, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(t.Context()) }()
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// roleAndDatabase are the role and the database of a DatabaseAs URL,
// quoted for SQL.
func roleAndDatabase(t *testing.T, dbURL string) (string, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return pgx.Identifier{u.User.Username()}.Sanitize(), pgx.Identifier{u.Path[1:]}.Sanitize()
}

// chooseAll runs n Choose("") at once and returns what they chose.
func chooseAll(t *testing.T, r *placement.Registry, n int) []string {
	t.Helper()
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			name, err := r.Choose(t.Context(), "")
			if err != nil {
				t.Error(err)
			}
			got[i] = name
		})
	}
	wg.Wait()
	return got
}

// TestUnusableDatabaseIsUsedAgainOnceGranted: a TENANT_DATABASES database
// found unusable (down at start, its role then found without CREATE) is
// checked again when it is used, at most once per
// Options.RecheckInterval: while the role still may not create schemas it
// stays unusable and nothing more is logged however often it is checked
// again (by Choose, by load and by name, and by new connections); once the
// operator grants CREATE it is chosen again without a restart, with one
// info line, however many Choose calls run at once.
func TestUnusableDatabaseIsUsedAgainOnceGranted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const every = 20 * time.Millisecond
	r, log, srv, lateURL := startedWhileDownRecheck(t, false, false, every)
	if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
		t.Fatalf("Choose() = %q, %v; want main", name, err)
	}
	if err := r.Unusable()["late"]; !errors.Is(err, placement.ErrMayNotCreateSchemas) {
		t.Fatalf("Unusable()[late] = %v; want its missing privilege; log:\n%s", err, log)
	}
	if _, err := r.Pool(ctx, "late"); err != nil { // Choose opened none: opened (and logged) here
		t.Fatal(err)
	}
	found := log.String()
	for range 4 {
		time.Sleep(2 * every) // a re-check due each round
		if got := chooseAll(t, r, 3); got[0] != "main" || got[1] != "main" || got[2] != "main" {
			t.Errorf("Choose() = %q while late's role still may not create schemas; want main", got)
		}
		if _, err := r.Choose(ctx, "late"); !errors.Is(err, placement.ErrMayNotCreateSchemas) {
			t.Errorf("Choose(late) = %v; want its missing privilege", err)
		}
		p, err := r.Pool(ctx, "late")
		if err != nil {
			t.Fatal(err)
		}
		p.Reset() // the next query makes a new connection
		if err := p.Ping(ctx); err != nil {
			t.Errorf("late's pool: %v", err)
		}
	}
	if log.String() != found {
		t.Errorf("failing re-checks logged:\n%s", strings.TrimPrefix(log.String(), found))
	}

	role, db := roleAndDatabase(t, lateURL)
	asAdmin(t, srv, "GRANT CREATE ON DATABASE "+db+" TO "+role)
	testenv.WaitFor(t, 10*time.Second, "late chosen again once granted", func() bool {
		return chooseAll(t, r, 4)[0] == "late"
	})
	if name, err := r.Choose(ctx, "late"); err != nil || name != "late" {
		t.Errorf("Choose(late) = %q, %v; want late", name, err)
	}
	if u := r.Unusable(); len(u) != 0 {
		t.Errorf("Unusable() = %v, want none", u)
	}
	if n := strings.Count(log.String(), "passed its check again"); n != 1 || strings.Count(log.String(), "level=ERROR") != 1 {
		t.Errorf("%d lines saying late passed its check again, want one (and the one error line):\n%s", n, log)
	}
}

// TestUnusableDatabaseRefusingTheLoginIsUsedAgainOnceFixed: a
// TENANT_DATABASES database whose server refused the URL's login when it
// came back is not checked again before Options.RecheckInterval has
// passed, and once the role's password is the URL's, it is chosen again
// without a restart.
func TestUnusableDatabaseRefusingTheLoginIsUsedAgainOnceFixed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const every = 500 * time.Millisecond
	r, log, srv, lateURL := startedWhileDownRecheck(t, true, true, every)
	// Timed from before the first Choose, whose check of late starts the
	// wait for its re-check: a stall after it cannot make the re-check
	// look not due yet.
	found := time.Now()
	if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
		t.Fatalf("Choose() = %q, %v; want main", name, err)
	}
	if err := r.Unusable()["late"]; !errors.Is(err, placement.ErrRefused) {
		t.Fatalf("Unusable()[late] = %v; want ErrRefused; log:\n%s", err, log)
	}
	role, _ := roleAndDatabase(t, lateURL)
	asAdmin(t, srv, "ALTER ROLE "+role+" PASSWORD 'n0t-the-s3cret'")
	name, err := r.Choose(ctx, "")
	if time.Since(found) < every && (err != nil || name != "main") {
		t.Errorf("Choose() = %q, %v before late's re-check is due; want main", name, err)
	}
	testenv.WaitFor(t, 10*time.Second, "late chosen again once its login is accepted", func() bool {
		name, err := r.Choose(ctx, "")
		return err == nil && name == "late"
	})
	if u := r.Unusable(); len(u) != 0 {
		t.Errorf("Unusable() = %v, want none", u)
	}
	if strings.Count(log.String(), "passed its check again") != 1 || strings.Count(log.String(), "level=ERROR") != 1 || strings.Contains(log.String(), "s3cret") {
		t.Errorf("want one error line, one line saying late passed its check again, no password:\n%s", log)
	}
}

// TestUnusableDatabaseIsRecheckedWhileItsPoolIsBusy: the re-check of an
// unusable database does not wait for a connection of its pool, whose
// connections its tenants' work may all hold (the re-check would then
// wait until chooseTimeout, holding up the provisioning request, and
// conclude nothing, however long the pool stays busy): it is made on a
// connection of its own, so a database granted CREATE while its pool is
// busy is placed on again at once, by name too.
func TestUnusableDatabaseIsRecheckedWhileItsPoolIsBusy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const every = 200 * time.Millisecond
	r, log, srv, lateURL := startedWhileDownRecheck(t, false, false, every)
	if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
		t.Fatalf("Choose() = %q, %v; want main", name, err)
	}
	if err := r.Unusable()["late"]; !errors.Is(err, placement.ErrMayNotCreateSchemas) {
		t.Fatalf("Unusable()[late] = %v; want its missing privilege; log:\n%s", err, log)
	}
	// Its tenants' work holds every connection of its pool (MaxConns 2).
	p, err := r.Pool(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	for range p.Config().MaxConns {
		c, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Release)
	}
	role, db := roleAndDatabase(t, lateURL)
	asAdmin(t, srv, "GRANT CREATE ON DATABASE "+db+" TO "+role)
	time.Sleep(2 * every) // late's re-check is due
	if name, err := r.Choose(ctx, "late"); err != nil || name != "late" {
		t.Errorf("Choose(late) = %q, %v with its pool busy once granted; want late", name, err)
	}
	if u := r.Unusable(); len(u) != 0 {
		t.Errorf("Unusable() = %v, want none", u)
	}
	if n := strings.Count(log.String(), "passed its check again"); n != 1 {
		t.Errorf("%d lines saying late passed its check again, want one:\n%s", n, log)
	}
}

// TestCheckSchemasOpensNoPool: `enqueue db list`'s check of a database
// (CheckSchemas) is made as `enqueue db add` makes it, over one
// connection of its own closed at once: it does not open the database's
// pool in the registry, which with KeepConns (DB_KEEP_CONNS, the default)
// would open TENANT_DB_MAX_CONNS connections to every database listed,
// taking a server's connection slots from the processes serving it.
func TestCheckSchemasOpensNoPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	main := catalogPool(t)
	r := placement.New(placement.Options{MainPool: main, Catalog: storage.NewPostgres(main),
		MaxConns: 4, KeepConns: true, RefreshInterval: -1})
	t.Cleanup(func() { _ = r.Close() })
	if _, err := r.Add(ctx, "eu2", testenv.PostgresAs(t, true)); err != nil {
		t.Fatal(err)
	}
	nocreate := testenv.PostgresAs(t, false)
	if _, err := storage.NewPostgres(main).AddDatabase(ctx, "eu3", nocreate); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckSchemas(ctx, "eu2"); err != nil {
		t.Errorf("CheckSchemas(eu2) = %v, want nil", err)
	}
	if err := r.CheckSchemas(ctx, "eu3"); !errors.Is(err, placement.ErrMayNotCreateSchemas) {
		t.Errorf("CheckSchemas(eu3) = %v, want ErrMayNotCreateSchemas", err)
	}
	if err := r.CheckSchemas(ctx, "main"); err != nil {
		t.Errorf("CheckSchemas(main) = %v, want nil", err)
	}
	if _, err := storage.NewPostgres(main).AddDatabase(ctx, "nourl", ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nope", "nourl"} {
		if err := r.CheckSchemas(ctx, name); !errors.Is(err, placement.ErrUnknownDatabase) {
			t.Errorf("CheckSchemas(%s) = %v, want ErrUnknownDatabase", name, err)
		}
	}
	if open := r.Open(); len(open) != 1 {
		t.Errorf("Open() = %v after the checks; want main only", open)
	}
}
