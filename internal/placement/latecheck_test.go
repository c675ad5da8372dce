package placement_test

import (
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// startedWhileDown builds a registry as a process does at start (New,
// CheckConfigured, Register) with TENANT_DATABASES late=<a database of a
// server of its own, given to a fresh role that owns it when owner is
// set, or that may only connect to it>, while that server is down, then
// brings the server up; with wrongPassword, the URL's password is wrong
// and the server, back up, asks for it. It returns the registry and its
// log.
func startedWhileDown(t *testing.T, owner, wrongPassword bool) (*placement.Registry, *testenv.LogBuffer) {
	t.Helper()
	r, log, _, _ := startedWhileDownRecheck(t, owner, wrongPassword, 0)
	return r, log
}

// startedWhileDownRecheck is startedWhileDown with the registry's
// Options.RecheckInterval recheck; it also returns late's server and URL.
func startedWhileDownRecheck(t *testing.T, owner, wrongPassword bool, recheck time.Duration) (*placement.Registry, *testenv.LogBuffer, *testenv.PostgresServer, string) {
	t.Helper()
	ctx := t.Context()
	main := catalogPool(t)
	srv := testenv.StartPostgres(t)
	lateURL := srv.DatabaseAs(t, owner)
	if wrongPassword {
		srv.RequirePasswords(t)
		u, err := url.Parse(lateURL)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), "n0t-the-s3cret")
		lateURL = u.String()
	}
	srv.Stop(t)
	log := &testenv.LogBuffer{}
	r := placement.New(placement.Options{MainPool: main, URLs: map[string]string{"late": lateURL},
		Catalog: storage.NewPostgres(main), MaxConns: 2, Logger: slog.New(slog.NewTextHandler(log, nil)),
		RecheckInterval: recheck})
	t.Cleanup(func() { _ = r.Close() })
	if err := r.CheckConfigured(ctx); err != nil {
		t.Fatalf("CheckConfigured with the database down: %v", err)
	}
	if !strings.Contains(log.String(), "not checked") {
		t.Fatalf("no warning that late was not checked:\n%s", log)
	}
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Start(t)
	return r, log, srv, lateURL
}

// TestLateCheckKeepsNewTenantsOffADatabaseWithoutCreate: a
// TENANT_DATABASES database that was down at start, and so not checked,
// is checked the first time a connection to it is made; when its role may
// not create schemas there it is unusable: Choose places no new tenant on
// it (by load, however empty it is, nor by name), the registry reports it
// (Unusable), and an error line naming it and the grant is logged once,
// however many callers reach it at once. Its tenants' pool still opens
// (they fail as they would without the check). The check runs on the
// first connection whatever makes it: here a tenant's work, several at
// once.
func TestLateCheckKeepsNewTenantsOffADatabaseWithoutCreate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, log := startedWhileDown(t, false, false)
	tn := tenantctx.Tenant{ID: tenantctx.NewID(), Database: "late", Schema: "t_late"}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			p, err := r.ForTenant(ctx, tn)
			if err == nil {
				err = p.Ping(ctx)
			}
			if err != nil {
				t.Errorf("a tenant's work on late: %v", err)
			}
		})
	}
	wg.Wait()
	if err := r.Unusable()["late"]; err == nil {
		t.Errorf("late not found unusable by its tenants' first connections; log:\n%s", log)
	}
	got := make([]string, 6)
	for i := range got {
		wg.Go(func() {
			name, err := r.Choose(ctx, "")
			if err != nil {
				t.Error(err)
			}
			got[i] = name
		})
	}
	wg.Wait()
	for _, name := range got {
		if name != "main" {
			t.Errorf("Choose() = %q, want main: late's role may not create schemas there", name)
		}
	}
	if name, err := r.Choose(ctx, "late"); err == nil || !strings.Contains(err.Error(), "may not create schemas") {
		t.Errorf("Choose(late) = %q, %v; want an error saying its role may not create schemas", name, err)
	}
	if err := r.Unusable()["late"]; err == nil || !strings.Contains(err.Error(), "GRANT CREATE ON DATABASE") {
		t.Errorf("Unusable()[late] = %v, want the missing privilege and its grant", err)
	}
	if n := strings.Count(log.String(), "level=ERROR"); n != 1 || !strings.Contains(log.String(), "database=late") {
		t.Errorf("%d error lines, want one naming late:\n%s", n, log)
	}
	if strings.Contains(log.String(), "PASSWORD") || strings.Contains(log.String(), "@127.0.0.1") {
		t.Errorf("log quotes the URL:\n%s", log)
	}
	p, err := r.Pool(ctx, "late")
	if err != nil {
		t.Fatalf("Pool(late): %v", err)
	}
	if err := p.Ping(ctx); err != nil {
		t.Errorf("late's pool: %v", err)
	}
}

// TestLateCheckUsesADatabaseWithCreate: a TENANT_DATABASES database that
// was down at start and comes back with a role that may create schemas
// there passes the late check and takes new tenants, without an error
// line.
func TestLateCheckUsesADatabaseWithCreate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, log := startedWhileDown(t, true, false)
	// late sorts before main and both hold no tenant.
	if name, err := r.Choose(ctx, ""); err != nil || name != "late" {
		t.Errorf("Choose() = %q, %v; want late", name, err)
	}
	if name, err := r.Choose(ctx, "late"); err != nil || name != "late" {
		t.Errorf("Choose(late) = %q, %v; want late", name, err)
	}
	if u := r.Unusable(); len(u) != 0 {
		t.Errorf("Unusable() = %v, want none", u)
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("error logged for a database that passed its check:\n%s", log)
	}
}

// TestLateCheckKeepsNewTenantsOffADatabaseRefusingTheLogin: a
// TENANT_DATABASES database down at start whose server, back up, refuses
// the URL's login (a wrong password, 28P01: what stops a start when the
// server is up) is unusable once Choose's ping meets the refusal: no new
// tenant is placed there, by load or by name, and one error line says so.
func TestLateCheckKeepsNewTenantsOffADatabaseRefusingTheLogin(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, log := startedWhileDown(t, true, true)
	for range 2 {
		if name, err := r.Choose(ctx, ""); err != nil || name != "main" {
			t.Errorf("Choose() = %q, %v; want main", name, err)
		}
	}
	if name, err := r.Choose(ctx, "late"); err == nil || !strings.Contains(err.Error(), "28P01") {
		t.Errorf("Choose(late) = %q, %v; want the refused login", name, err)
	}
	if err := r.Unusable()["late"]; !errors.Is(err, placement.ErrRefused) {
		t.Errorf("Unusable()[late] = %v, want ErrRefused", err)
	}
	if n := strings.Count(log.String(), "level=ERROR"); n != 1 || strings.Contains(log.String(), "s3cret") {
		t.Errorf("%d error lines, want one, without the password:\n%s", n, log)
	}
}
