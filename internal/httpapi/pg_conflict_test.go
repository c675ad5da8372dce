package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestSerializationFailureIs503: a write PostgreSQL rolls back to resolve
// a conflict with another transaction (SQLSTATE 40001 serialization_failure,
// as every catalog write may meet on a database whose
// default_transaction_isolation is serializable; 40P01 deadlock_detected
// alike) answers 503 with Retry-After: nothing of it was kept, and the
// same request sent again succeeds. It answered 500 "internal error",
// which says a retry will not help.
func TestSerializationFailureIs503(t *testing.T) {
	t.Parallel()
	b := setupOnDB(t, testenv.Postgres(t), testenv.Redis(t), nil)
	acme := b.active(t, "acme")
	ctx := context.Background()
	db := pgx.Identifier{b.pool.Config().ConnConfig.Database}.Sanitize()
	if _, err := b.pool.Exec(ctx, "ALTER DATABASE "+db+" SET default_transaction_isolation = 'serializable'"); err != nil {
		t.Fatal(err)
	}
	b.pool.Reset()

	// Another transaction changes the tenant's row; the time zone change
	// waits for it, and once it commits the change is refused (40001).
	other, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, "UPDATE tenancy.tenants SET name = name || ' GmbH' WHERE id = $1", acme.ID); err != nil {
		t.Fatal(err)
	}
	put := func() response {
		return b.doWithin(t, request{method: http.MethodPut, path: "/admin/tenants/" + acme.ID + "/time_zone",
			bearer: adminToken, body: strings.NewReader(`{"time_zone":"Europe/Berlin"}`)})
	}
	answered := make(chan response, 1)
	go func() { answered <- put() }()
	testenv.WaitFor(t, 10*time.Second, "the time zone change waits for the other transaction", func() bool {
		n, err := testenv.LockWaiters(ctx, b.pool, "UPDATE tenancy.tenants SET time_zone")
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-answered
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("PUT time_zone refused by a serialization failure: %d %s, want 503", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	_ = r.errorText(t)
	wantStatus(t, put(), http.StatusOK)
}
