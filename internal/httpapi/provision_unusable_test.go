package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestProvisionOnAnUnusableDatabaseIsRefusedWithItsReason: POST
// /admin/tenants naming a TENANT_DATABASES database that takes no new
// tenant (down at start, then found unusable on its first connection: its
// role may not create schemas there, or its server refuses the URL's
// login) answers 400 with the reason, as a database this service cannot
// reach does, and creates nothing: not 500 "internal error", which hid
// the reason from the operator, nor 503 with Retry-After for a refused
// login, which no retry fixes.
func TestProvisionOnAnUnusableDatabaseIsRefusedWithItsReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		wrongPassword bool
		errHas        string
	}{
		{"role may not create schemas", false, "may not create schemas"},
		{"login refused", true, "server refused the login or the database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.StartPostgres(t)
			lateURL := srv.DatabaseAs(t, false)
			if tc.wrongPassword {
				srv.RequirePasswords(t)
				u, err := url.Parse(lateURL)
				if err != nil {
					t.Fatal(err)
				}
				u.User = url.UserPassword(u.User.Username(), "n0t-the-s3cret")
				lateURL = u.String()
			}
			srv.Stop(t)
			b := setup(t, func(o *httpapi.Options) {
				ctx := context.Background()
				// As backend.Open builds the registry at start, the
				// database down: it is checked on its first connection.
				r := placement.New(placement.Options{MainPool: o.Pool, URLs: map[string]string{"late": lateURL},
					Catalog: o.Catalog, MaxConns: 2})
				t.Cleanup(func() { _ = r.Close() })
				if err := r.CheckConfigured(ctx); err != nil {
					t.Fatalf("CheckConfigured with late down: %v", err)
				}
				if err := r.Register(ctx); err != nil {
					t.Fatal(err)
				}
				o.Pools = r
				o.Tenancy = tenancy.New(tenancy.Config{Catalog: o.Catalog, Enqueuer: o.Enqueuer, Documents: o.Documents,
					SchemaPool: o.Pool, Pools: r, Plans: fair.DefaultPlans()})
			})
			srv.Start(t)

			for range 2 { // found unusable by the first, known so by the second
				r := b.admin(t, http.MethodPost, "/admin/tenants", `{"slug":"acme","database":"late"}`)
				wantStatus(t, r, http.StatusBadRequest)
				if got := r.errorText(t); !strings.Contains(got, `database "late"`) || !strings.Contains(got, tc.errHas) {
					t.Errorf("error %q, want it to name late and say %q", got, tc.errHas)
				}
				if r.header.Get("Retry-After") != "" {
					t.Errorf("Retry-After %q on a refusal no retry fixes", r.header.Get("Retry-After"))
				}
			}
			if ts, err := b.pg.ListTenants(context.Background(), storage.ListOptions{}); err != nil || len(ts) != 0 {
				t.Fatalf("refused requests created tenants: %v, %v", ts, err)
			}
			if strings.Contains(b.logs.String(), "n0t-the-s3cret") {
				t.Errorf("the log quotes the URL's password:\n%s", b.logs)
			}
		})
	}
}
