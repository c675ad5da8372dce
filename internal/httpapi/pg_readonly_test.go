package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// setReadOnly makes b's database take no writes (on) or take them again
// (off), as a primary demoted to a hot standby by a failover, or set
// read-only by an operator, does: default_transaction_read_only for the
// database, and the pool's connections made anew, so that every write
// is answered SQLSTATE 25006.
func (b *bundle) setReadOnly(t *testing.T, on bool) {
	t.Helper()
	db := pgx.Identifier{b.pool.Config().ConnConfig.Database}.Sanitize()
	sql := "ALTER DATABASE " + db + " RESET default_transaction_read_only"
	if on {
		sql = "ALTER DATABASE " + db + " SET default_transaction_read_only = on"
	}
	ctx := context.Background()
	if err := pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b.pool.Reset()
}

// TestPostgresReadOnlyIs503: with the catalog's server taking no writes
// (SQLSTATE 25006: a hot standby after a failover, default_transaction_read_only),
// the admin routes that write answer 503 with Retry-After and a JSON
// error, as with PostgreSQL down, not 500; the reads and the tenants'
// enqueues are served meanwhile, and once the server takes writes again
// the same writes succeed.
func TestPostgresReadOnlyIs503(t *testing.T) {
	t.Parallel()
	b := setupOnDB(t, testenv.Postgres(t), testenv.Redis(t), nil)
	acme := b.active(t, "acme")
	type call struct{ method, path, body string }
	writes := []call{
		{http.MethodPost, "/admin/tenants", `{"slug":"newco"}`},
		{http.MethodPut, "/admin/tenants/" + acme.ID + "/limits", `{"weight":2}`},
		{http.MethodPut, "/admin/tenants/" + acme.ID + "/time_zone", `{"time_zone":"Europe/Berlin"}`},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/keys", ""},
		{http.MethodPost, "/admin/tenants/" + acme.ID + "/suspend", ""},
	}
	admin := func(c call) response {
		rq := request{method: c.method, path: c.path, bearer: adminToken}
		if c.body != "" {
			rq.body = strings.NewReader(c.body)
		}
		return b.doWithin(t, rq)
	}

	b.setReadOnly(t, true)
	t.Cleanup(func() { b.setReadOnly(t, false) })
	for _, c := range writes {
		r := admin(c)
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with PostgreSQL read-only: %d %s, want 503", c.method, c.path, r.status, r.body)
			continue
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s %s: Retry-After %q", c.method, c.path, r.header.Get("Retry-After"))
		}
		_ = r.errorText(t)
	}
	wantStatus(t, admin(call{http.MethodGet, "/admin/tenants/" + acme.ID, ""}), http.StatusOK)
	wantStatus(t, b.doWithin(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: acme.host(), bearer: acme.key}), http.StatusAccepted)

	b.setReadOnly(t, false)
	for _, c := range writes {
		if r := admin(c); r.status >= 300 {
			t.Errorf("%s %s once PostgreSQL takes writes again: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}
