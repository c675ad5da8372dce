package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// revocationWithin is how long a revoked key or a suspended tenant may
// still be served by any enqueue service (P18 in docs/architecture.md).
const revocationWithin = time.Second

// addEnqueue starts another enqueue service on the stack's servers: a
// replica with its own in-process cache.
func (s *stack) addEnqueue(name string) *proc {
	s.t.Helper()
	p := startProc(s.t, name, testenv.BuildBinary(s.t, enqueuePkg), s.env(nil), "serve")
	p.waitReady()
	return p
}

// call sends one request to the enqueue service p.
func call(t *testing.T, p *proc, method, path, host, token string) (int, []byte) {
	t.Helper()
	status, body, err := httpDo(context.Background(), method, p.url(path), host, token, nil)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", p.name, method, path, err)
	}
	return status, body
}

// authStatus is the status tn's route answers with key on p: GET of a
// task that does not exist, so 404 means the key was accepted.
func authStatus(t *testing.T, p *proc, tn tenantRef, key string) int {
	t.Helper()
	status, _ := call(t, p, http.MethodGet, "/v1/tasks/no-such-task", tn.host(), key)
	return status
}

// tenantGoneStatus is like authStatus with tn's own key, but answers 404
// only when the tenant is gone (404 "unknown tenant" while it is being
// deleted, or 401 once its destroy revoked the key), and 0 when the key
// was accepted (a 404 for the unknown task).
func tenantGoneStatus(t *testing.T, p *proc, tn tenantRef) int {
	t.Helper()
	status, body := call(t, p, http.MethodGet, "/v1/tasks/no-such-task", tn.host(), tn.Key)
	var e struct {
		Error string `json:"error"`
	}
	if status == http.StatusNotFound && (json.Unmarshal(body, &e) != nil || e.Error != "unknown tenant") {
		return 0
	}
	if status == http.StatusUnauthorized && json.Unmarshal(body, &e) == nil && e.Error == "invalid API key" {
		// Its destroy has run and revoked its keys: gone as well (the key
		// is checked before the subdomain).
		return http.StatusNotFound
	}
	return status
}

// issueKey issues a key for tn through p and returns its id and the key.
func issueKey(t *testing.T, p *proc, tn tenantRef) (int64, string) {
	t.Helper()
	status, body := call(t, p, http.MethodPost, "/admin/tenants/"+tn.ID+"/keys", "", adminToken)
	var k struct {
		ID     int64  `json:"id"`
		APIKey string `json:"api_key"`
	}
	if status != http.StatusCreated || json.Unmarshal(body, &k) != nil || k.ID == 0 || k.APIKey == "" {
		t.Fatalf("issue key: %d %s", status, body)
	}
	return k.ID, k.APIKey
}

// untilEveryReplica polls each replica until status(p) is want and logs
// how long each took after start. It fails the test when a request sent
// more than within after start still gets another answer. What counts is
// when a request was sent, not when its answer came: on a loaded machine a
// request sent in time may be answered late, which says nothing about
// the caches.
func untilEveryReplica(t *testing.T, replicas []*proc, start time.Time, within time.Duration, what string, status func(*proc) int, want int) {
	t.Helper()
	for _, p := range replicas {
		for {
			sent := time.Now()
			got := status(p)
			if got == want {
				t.Logf("%s: %s answered %d %v after the change returned", what, p.name, want, time.Since(start).Round(time.Millisecond))
				break
			}
			if sent.Sub(start) > within {
				t.Errorf("%s: %s answered %d to a request sent %v after the change, want %d within %v", what, p.name, got, sent.Sub(start).Round(time.Millisecond), want, within)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestKeyRevokedOnEveryReplicaWithinOneSecond: two enqueue service
// processes with warm caches; a key revoked through one (DELETE
// /admin/tenants/{id}/keys/{key_id}, 204) is refused (401) by both within a
// second, while the tenant's other key keeps working; a suspension through
// the other is refused (403) by both within a second, and so is a deletion
// (404 "unknown tenant") (P18 in docs/architecture.md).
func TestKeyRevokedOnEveryReplicaWithinOneSecond(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	second := s.addEnqueue("enqueue-2")
	replicas := []*proc{s.enqueue, second}
	provisioned := s.provision([]string{"leaky", "doomed"}, tenantName)
	tn, doomed := provisioned[0], provisioned[1]
	leakedID, leaked := issueKey(t, second, tn)

	// Warm every cache layer of both replicas with both keys, and keep
	// them warm while the revocation runs.
	for _, p := range replicas {
		for _, key := range []string{tn.Key, leaked} {
			if got := authStatus(t, p, tn, key); got != http.StatusNotFound {
				t.Fatalf("%s: key before the revocation: %d, want 404 (authenticated)", p.name, got)
			}
		}
	}
	status, body := call(t, s.enqueue, http.MethodDelete, "/admin/tenants/"+tn.ID+"/keys/"+strconv.FormatInt(leakedID, 10), "", adminToken)
	revoked := time.Now()
	if status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", status, body)
	}
	untilEveryReplica(t, replicas, revoked, revocationWithin, "revoked key",
		func(p *proc) int { return authStatus(t, p, tn, leaked) }, http.StatusUnauthorized)
	for _, p := range replicas {
		if got := authStatus(t, p, tn, tn.Key); got != http.StatusNotFound {
			t.Errorf("%s: the tenant's other key after the revocation: %d, want it accepted", p.name, got)
		}
	}

	// The key list shows the revocation, and never a key.
	status, body = call(t, second, http.MethodGet, "/admin/tenants/"+tn.ID+"/keys", "", adminToken)
	var list struct {
		Keys []struct {
			ID        int64   `json:"id"`
			Prefix    string  `json:"prefix"`
			RevokedAt *string `json:"revoked_at"`
		} `json:"keys"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Keys) != 2 || list.Keys[1].ID != leakedID || list.Keys[1].RevokedAt == nil || list.Keys[0].RevokedAt != nil {
		t.Errorf("key list: %d %s", status, body)
	}

	// A suspension through the other replica.
	status, body = call(t, second, http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", "", adminToken)
	suspended := time.Now()
	if status != http.StatusOK {
		t.Fatalf("suspend: %d %s", status, body)
	}
	untilEveryReplica(t, replicas, suspended, revocationWithin, "suspended tenant",
		func(p *proc) int { return authStatus(t, p, tn, tn.Key) }, http.StatusForbidden)

	// A deletion through the first replica, with both caches warm.
	for _, p := range replicas {
		if got := authStatus(t, p, doomed, doomed.Key); got != http.StatusNotFound {
			t.Fatalf("%s: the doomed tenant's key before the deletion: %d, want 404 (authenticated)", p.name, got)
		}
	}
	status, body = call(t, s.enqueue, http.MethodDelete, "/admin/tenants/"+doomed.ID, "", adminToken)
	deleted := time.Now()
	if status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", status, body)
	}
	untilEveryReplica(t, replicas, deleted, revocationWithin, "deleted tenant",
		func(p *proc) int { return tenantGoneStatus(t, p, doomed) }, http.StatusNotFound)
}

// TestUnpublishedKeyRevocationIs503: when the cache invalidation of a key
// revocation or a suspension cannot be published (here Redis refuses
// PUBLISH), the admin call answers 503 with Retry-After instead of success,
// since the other replicas would go on accepting the key for the Redis
// cache's TTL; a deletion request likewise. Once publishing works, the
// retried calls succeed and every replica refuses the key and the tenants
// within a second (P18 in
// docs/architecture.md).
func TestUnpublishedKeyRevocationIs503(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	second := s.addEnqueue("enqueue-2")
	replicas := []*proc{s.enqueue, second}
	provisioned := s.provision([]string{"partitioned", "doomed"}, tenantName)
	tn, doomed := provisioned[0], provisioned[1]
	keyID, key := issueKey(t, s.enqueue, tn)
	for _, p := range replicas {
		if got := authStatus(t, p, tn, key); got != http.StatusNotFound {
			t.Fatalf("%s: key before the revocation: %d", p.name, got)
		}
		if got := tenantGoneStatus(t, p, doomed); got != 0 {
			t.Fatalf("%s: the doomed tenant before the deletion: %d, want its key accepted", p.name, got)
		}
	}

	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	if err := rdb.Do(ctx, "ACL", "SETUSER", "default", "-publish").Err(); err != nil {
		t.Fatalf("forbid PUBLISH: %v", err)
	}
	revoke := "/admin/tenants/" + tn.ID + "/keys/" + strconv.FormatInt(keyID, 10)
	for _, c := range []struct{ method, path string }{
		{http.MethodDelete, revoke},
		{http.MethodPost, "/admin/tenants/" + tn.ID + "/suspend"},
		{http.MethodDelete, "/admin/tenants/" + doomed.ID},
	} {
		status, body, err := httpDo(ctx, c.method, second.url(c.path), "", adminToken, nil)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusServiceUnavailable {
			t.Errorf("%s %s while PUBLISH fails: %d %s, want 503", c.method, c.path, status, body)
		}
	}
	if !second.logContains("not propagated") {
		t.Errorf("the failed propagation is not logged")
	}

	if err := rdb.Do(ctx, "ACL", "SETUSER", "default", "+publish").Err(); err != nil {
		t.Fatalf("allow PUBLISH: %v", err)
	}
	status, body := call(t, second, http.MethodDelete, revoke, "", adminToken)
	retried := time.Now()
	if status != http.StatusNoContent {
		t.Fatalf("retried revocation: %d %s", status, body)
	}
	untilEveryReplica(t, replicas, retried, revocationWithin, "revoked key after the retry",
		func(p *proc) int { return authStatus(t, p, tn, key) }, http.StatusUnauthorized)
	status, body = call(t, second, http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", "", adminToken)
	if status != http.StatusOK {
		t.Fatalf("retried suspension: %d %s", status, body)
	}
	untilEveryReplica(t, replicas, time.Now(), revocationWithin, "suspended tenant after the retry",
		func(p *proc) int { return authStatus(t, p, tn, tn.Key) }, http.StatusForbidden)
	// The deletion was saved (its destroy may have run since): a retry
	// answers 202, or 404 once the tenant is gone; either way every replica
	// refuses the tenant.
	status, body = call(t, second, http.MethodDelete, "/admin/tenants/"+doomed.ID, "", adminToken)
	if status != http.StatusAccepted && status != http.StatusNotFound {
		t.Fatalf("retried deletion: %d %s", status, body)
	}
	untilEveryReplica(t, replicas, time.Now(), revocationWithin, "deleted tenant after the retry",
		func(p *proc) int { return tenantGoneStatus(t, p, doomed) }, http.StatusNotFound)
}

// TestOneTenantCannotEvictAnothersTaskRecords: asynq keeps 10,000 archived
// tasks per queue for all tenants together. A noisy tenant's 10,000
// requests for invoices that do not exist are refused at the API (404)
// and enqueue nothing; and when 10,000 of its tasks are archived anyway
// (invoices deleted after the enqueue), evicting a quiet tenant's archived
// task from asynq, the quiet tenant still sees that task archived, with
// its reason, from its own records (P15 in docs/architecture.md).
func TestOneTenantCannotEvictAnothersTaskRecords(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{concurrency: 8})
	tenants := s.provision([]string{"quiet", "noisy"}, tenantName)
	quiet, noisy := tenants[0], tenants[1]
	s.seed(quiet, invoiceSeed{overdue: 1, lines: 1})
	s.seed(noisy, invoiceSeed{overdue: 1, lines: 1})

	client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	enq := tasks.NewEnqueuer(client, s.inspector, nil)
	ctx := context.Background()

	// The quiet tenant's task, archived by the worker (its invoice went
	// away after the enqueue).
	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: quiet.ID, InvoiceID: 999})
	if err != nil {
		t.Fatal(err)
	}
	quietTask := res.Info.ID
	taskState := func() (int, map[string]any) {
		status, body := s.api(http.MethodGet, "/v1/tasks/"+quietTask, quiet.host(), quiet.Key, nil)
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		return status, m
	}
	eventually(t, 60*time.Second, 100*time.Millisecond, "the quiet tenant's task archived", func() error {
		if status, m := taskState(); status != http.StatusOK || m["state"] != "archived" || m["last_error"] != "invoice not found" {
			return fmt.Errorf("%d %v", status, m)
		}
		return nil
	})

	// 10,000 API requests of the noisy tenant for invoices it does not have.
	const volume = 10_000
	var statuses [600]atomic.Int64
	parallel(volume, 16, func(i int) {
		st, _, err := s.post(ctx, noisy, "pdf", 1000+i)
		if err != nil {
			st = 599
		}
		statuses[min(st, 599)].Add(1)
	})
	if n := statuses[http.StatusNotFound].Load(); n != volume {
		t.Fatalf("%d of %d requests for missing invoices answered 404 (202: %d, 429: %d, errors: %d)", n, volume,
			statuses[http.StatusAccepted].Load(), statuses[http.StatusTooManyRequests].Load(), statuses[599].Load())
	}
	if c, err := s.counts(); err != nil || c.archived != 1 || c.unfinished() != 0 {
		t.Fatalf("queues after the refused requests: %+v, %v; want only the quiet tenant's archived task", c, err)
	}

	// 10,000 of the noisy tenant's tasks archived all the same, through the
	// worker, as when its invoices are deleted after the enqueue.
	parallel(volume+20, 16, func(i int) {
		if _, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: noisy.ID, InvoiceID: int64(100_000 + i)}); err != nil {
			t.Errorf("enqueue: %v", err)
		}
	})
	c := s.waitDrained(5 * time.Minute)
	if _, err := s.inspector.GetTaskInfo(tasks.QueueDefault, quietTask); err == nil {
		t.Fatalf("asynq still has the quiet tenant's archived task after %d newer archives (%+v): the test did not evict it", volume+20, c)
	}
	status, m := taskState()
	if status != http.StatusOK || m["state"] != "archived" || m["last_error"] != "invoice not found" || m["task_id"] != quietTask {
		t.Errorf("the quiet tenant's task after the noisy tenant's volume: %d %v; want archived with its reason", status, m)
	}
	// The noisy tenant's own records are capped at its own share.
	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	if n, err := rdb.HLen(ctx, tasks.DefaultTaskRecordsPrefix+"{"+noisy.ID+"}:records").Result(); err != nil || n != tasks.DefaultTaskRecordsPerTenant {
		t.Errorf("the noisy tenant keeps %d records (%v), want its cap %d", n, err, tasks.DefaultTaskRecordsPerTenant)
	}
}
