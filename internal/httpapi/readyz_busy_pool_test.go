package httpapi_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/httpapi"
)

// TestReadyzTrueWhileEveryConnectionIsBusy: four tenants whose invoices
// are locked (a migration, the invoicing app, a move) each hold their
// bound of connections (API_TENANT_DB_CONNS, 4) waiting for the lock, so
// the pool's 16 connections are all in use. PostgreSQL answers all the
// same: /readyz is 200 and names no failing dependency. Pinging through
// the pool, it waited for a free connection until its 2 s bound and
// answered 503 "postgres unavailable", and a load balancer took every
// replica out of service while the database was fine.
func TestReadyzTrueWhileEveryConnectionIsBusy(t *testing.T) {
	t.Parallel()
	// Requests wait for the lock for the whole test: none gives its
	// connection back while /readyz runs.
	b := setup(t, func(o *httpapi.Options) { o.RequestTimeout = 30 * time.Second })
	ctx := t.Context()
	lockConn, err := pgx.Connect(ctx, b.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close(context.Background())
	tx, err := lockConn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tenants []tenant
	for _, slug := range []string{"busy1", "busy2", "busy3", "busy4"} {
		tn := b.active(t, slug)
		wantStatus(t, b.do(t, request{method: http.MethodPost, path: "/v1/invoices/1/pdf", host: tn.host(), bearer: tn.key}), http.StatusAccepted)
		if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{tn.Schema, "invoices"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		tenants = append(tenants, tn)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// Rolling back ends the requests waiting for the lock.
	defer func() { _ = tx.Rollback(context.Background()) }()
	for _, tn := range tenants {
		for range 6 { // more than the tenant's 4
			wg.Go(func() {
				_, _ = b.try(request{method: http.MethodPost, path: "/v1/invoices/2/pdf", host: tn.host(), bearer: tn.key})
			})
		}
	}
	for deadline := time.Now().Add(20 * time.Second); b.pool.Stat().AcquiredConns() < b.pool.Stat().MaxConns(); {
		if time.Now().After(deadline) { // a bound for the failure message, not a measurement
			t.Fatalf("the requests never took every connection: %d of %d in use", b.pool.Stat().AcquiredConns(), b.pool.Stat().MaxConns())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := b.do(t, request{method: http.MethodGet, path: "/readyz"})
	if r.status != http.StatusOK {
		t.Errorf("/readyz with PostgreSQL answering and every pool connection busy = %d %s, want 200", r.status, r.body)
	}
}
