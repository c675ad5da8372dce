package httpapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/tasks"
)

// TestKeyRevokedInFlightLearnsNoMissingInvoice: a request that waited
// after its authentication (for a lock on the tenant's invoices) and
// whose key was revoked, or whose tenant was suspended, meanwhile gets
// the 401 or 403 a new request gets, as the README's "Revocation"
// promises, also when it names invoices the tenant does not have: it was
// answered 404 "invoice not found", or for a bulk request the tenant's
// missing ids, from the tenant's tables after the change had answered
// (the download route checks again before its 404 already).
func TestKeyRevokedInFlightLearnsNoMissingInvoice(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(b *bundle, tn tenant) response
		want   int
	}{
		{"revoked", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodDelete, "/admin/tenants/"+tn.ID+"/keys/"+strconv.FormatInt(firstKeyID(t, b, tn), 10), "")
		}, http.StatusUnauthorized},
		{"suspended", func(b *bundle, tn tenant) response {
			return b.admin(t, http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", "")
		}, http.StatusForbidden},
	} {
		for _, route := range []string{"single", "bulk"} {
			t.Run(c.name+" "+route, func(t *testing.T) {
				b := setup(t)
				tn := b.active(t, "acme")
				send := func(id string) response {
					if route == "single" {
						return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/" + id + "/pdf", host: tn.host(), bearer: tn.key})
					}
					return b.do(t, request{method: http.MethodPost, path: "/v1/invoices/pdf", host: tn.host(), bearer: tn.key,
						body: strings.NewReader(`{"invoice_ids":[1,` + id + `]}`)})
				}
				wantStatus(t, send("9000"), http.StatusNotFound) // look-ups cached, as in a running service

				r := inFlightAcrossChange(t, b, tn, func() response { return send("9001") }, func() response { return send("9002") },
					func() response { return c.change(b, tn) }, c.want)
				if r.status != c.want {
					t.Errorf("in-flight request for a missing invoice: status %d, want %d; body %s", r.status, c.want, r.body)
				}
			})
		}
	}
}

// TestKeyRevokedInFlightLearnsNoMissingTask: GET /v1/tasks/{id} whose
// look-up waited for Redis, and whose key was revoked (or tenant
// suspended or deleted) meanwhile, gets what a new request gets (the
// README's row of the route), also for a task id the tenant has no task
// of: it was answered 404 "task not found" from the look-up after the
// change had answered.
func TestKeyRevokedInFlightLearnsNoMissingTask(t *testing.T) {
	for _, c := range credentialChanges(t) {
		t.Run(c.name, func(t *testing.T) {
			g := &gateHook{}
			b := setup(t, func(o *httpapi.Options) {
				// The look-ups' Redis client passes its commands through g.
				rdb := redis.NewClient(&redis.Options{Addr: o.Redis.(*redis.Client).Options().Addr})
				rdb.AddHook(g)
				t.Cleanup(func() { _ = rdb.Close() })
				o.Enqueuer = tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), o.Logger,
					tasks.WithRedis(rdb)).WithTaskRecords(o.TaskRecords)
			})
			tn := b.active(t, "acme")
			get := func() response {
				return b.do(t, request{method: http.MethodGet, path: "/v1/tasks/invoice:pdf:" + tn.ID + ":9001", host: tn.host(), bearer: tn.key})
			}
			wantStatus(t, get(), http.StatusNotFound) // look-ups cached, as in a running service

			entered := g.close()
			answer := make(chan response, 1)
			go func() { answer <- get() }()
			select {
			case <-entered: // authenticated, its look-up waits for Redis
			case <-time.After(time.Minute): // a bound for the failure message
				t.Fatal("the request's look-up never reached Redis")
			}
			if r := c.change(b, tn); r.status >= 300 {
				t.Fatalf("the change: %d %s", r.status, r.body)
			}
			fresh := get() // a new request is refused at once
			wantStatus(t, fresh, c.want)
			g.open()
			select {
			case r := <-answer:
				if r.status != fresh.status || r.errorText(t) != fresh.errorText(t) {
					t.Errorf("in-flight look-up of a missing task: %d %s; a new request gets %d %s", r.status, r.body, fresh.status, fresh.body)
				}
			case <-time.After(time.Minute):
				t.Fatal("in-flight request not answered")
			}
		})
	}
}
