package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestSerializationFailureIs503: a write PostgreSQL rolls back to resolve
// a conflict with another transaction (SQLSTATE 40001 serialization_failure,
// as a transaction at repeatable read or serializable may meet; 40P01
// deadlock_detected alike) answers 503 with Retry-After: nothing of it
// was kept, and the same request sent again succeeds. It answered 500 "internal error",
// which says a retry will not help.
func TestSerializationFailureIs503(t *testing.T) {
	t.Parallel()
	b := setupOnDB(t, testenv.Postgres(t), testenv.Redis(t), nil)
	acme := b.active(t, "acme")
	ctx := context.Background()
	// PostgreSQL rolls the tenant row's first update back with 40001, as
	// it resolves a conflict: the catalog's writes run at read committed
	// and wait out another transaction's write instead of meeting one, so
	// a trigger raises it, once (a sequence is not rolled back).
	for _, stmt := range []string{
		`CREATE SEQUENCE public.conflict_once`,
		`CREATE FUNCTION public.conflict_once() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN
		   IF nextval('public.conflict_once') = 1 THEN
		     RAISE EXCEPTION 'could not serialize access due to concurrent update' USING ERRCODE = 'serialization_failure';
		   END IF;
		   RETURN NEW;
		 END$$`,
		`CREATE TRIGGER conflict_once BEFORE UPDATE ON tenancy.tenants FOR EACH ROW EXECUTE FUNCTION public.conflict_once()`,
	} {
		if _, err := b.pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	put := func() response {
		return b.doWithin(t, request{method: http.MethodPut, path: "/admin/tenants/" + acme.ID + "/time_zone",
			bearer: adminToken, body: strings.NewReader(`{"time_zone":"Europe/Berlin"}`)})
	}
	r := put()
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("PUT time_zone refused by a serialization failure: %d %s, want 503", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	_ = r.errorText(t)
	wantStatus(t, put(), http.StatusOK)
}
