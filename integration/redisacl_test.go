package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// TestStackAsRestrictedRedisUser runs the system's flows as managed Redis
// services have applications run them (docs/operations.md, "Redis user"): an ACL user
// without @dangerous; one restricted, besides, to the key patterns and
// channels docs/operations.md lists; and a server with CONFIG, KEYS, FLUSHALL and
// DEBUG disabled by rename-command. Both binaries start, a tenant is
// provisioned, renders are enqueued (single and bulk) and completed through
// fair dispatch, a tenant is suspended, resumed, paused, resumed and
// drained, the admin queue views, /metrics, the dashboard's read pages
// and the operator CLI (queues, dispatch-mode, a switch of it) answer, and
// a tenant is deleted. The server refuses nothing but INFO (the start-up
// check of maxmemory-policy, which then warns, and the dashboard's Redis
// page, whose data then says info_refused).
func TestStackAsRestrictedRedisUser(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		extra    []string
		acl      []any
		infoDeny bool
	}{
		"without @dangerous": {acl: []any{"~*", "&*", "+@all", "-@dangerous"}, infoDeny: true},
		"key patterns":       {acl: []any{"~asynq:*", "~fair:*", "~tenantcache:*", "~tenantworker:*", "&asynq:cancel", "&fair:*", "&tenantcache:*", "+@all", "-@dangerous"}, infoDeny: true},
		"renamed commands": {extra: []string{"--rename-command", "CONFIG", "", "--rename-command", "KEYS", "",
			"--rename-command", "FLUSHALL", "", "--rename-command", "DEBUG", ""}, acl: []any{"~*", "&*", "+@all"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			restrictedRedisRun(t, c.extra, c.acl, c.infoDeny)
		})
	}
}

func restrictedRedisRun(t *testing.T, extra []string, acl []any, infoDeny bool) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{ExtraArgs: extra})
	admin := newRedisAdmin(t, srv.Addr())
	ctx := context.Background()
	if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", "app", "on", ">pw"}, acl...)...).Err(); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{redis: srv, env: map[string]string{"REDIS_URL": fmt.Sprintf("redis://app:pw@%s", srv.Addr())}})
	tns := s.provision(tenantSlugs("acl", 2), tenantName)
	for _, tn := range tns {
		s.seed(tn, invoiceSeed{overdue: 3, lines: 2})
	}
	pdf := s.mustPost(tns[0], "pdf", 1)
	s.waitCompleted(pdf.Queue, []string{pdf.TaskID}, 90*time.Second)
	if st, body := s.api(http.MethodPost, "/v1/invoices/pdf", tns[1].host(), tns[1].Key, map[string]any{"invoice_ids": []int{1, 2, 3}}); st != http.StatusAccepted {
		t.Errorf("bulk render: %d %s", st, body)
	}
	// Both processes' caches and the worker listen as the user.
	for ch, least := range map[string]int64{storage.DefaultCacheKeyPrefix + "invalidate": 2, fair.WakeChannel(tasks.QueueDefault): 1} {
		if n, err := admin.PubSubNumSub(ctx, ch).Result(); err != nil || n[ch] < least {
			t.Errorf("subscribers of %s: %v %v, want at least %d", ch, n, err, least)
		}
	}
	for _, p := range []string{"/suspend", "/resume", "/queue/pause", "/queue/resume", "/queue/drain"} {
		if st, body := s.api(http.MethodPost, "/admin/tenants/"+tns[1].ID+p, "", adminToken, nil); st != http.StatusOK {
			t.Errorf("POST %s: %d %s", p, st, body)
		}
	}
	for _, p := range []string{"/admin/queues", "/admin/tenants/" + tns[0].ID + "/queue", "/metrics"} {
		if st, body := s.api(http.MethodGet, p, "", adminToken, nil); st != http.StatusOK {
			t.Errorf("GET %s: %d %.300s", p, st, body)
		}
	}
	for _, p := range []string{"/", "/api/queues", "/api/redis_info", "/api/servers", "/api/scheduler_entries", "/api/queue_stats",
		"/api/queues/default/pending_tasks", "/api/queues/default/completed_tasks", "/api/queues/default/archived_tasks"} {
		req, err := http.NewRequest(http.MethodGet, s.enqueue.url("/admin/dashboard"+p), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", basicAuth(adminToken))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("dashboard %s: %d, want %d", p, resp.StatusCode, http.StatusOK)
		}
		// INFO refused: the Redis page's data says so (documented).
		if p == "/api/redis_info" && strings.Contains(string(body), `"info_refused":true`) != infoDeny {
			t.Errorf("dashboard %s: %.300s; want info_refused %v", p, body, infoDeny)
		}
	}
	bin := testenv.BuildBinary(t, "github.com/invoicing/tenantworker/cmd/enqueue")
	cli := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		for k, v := range s.env(nil) {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("enqueue %v: %v %.600s", args, err, out)
		}
	}
	cli("queues", "--json")
	cli("dispatch-mode")
	if st, body := s.api(http.MethodDelete, "/admin/tenants/"+tns[1].ID, "", adminToken, nil); st != http.StatusAccepted {
		t.Fatalf("delete: %d %s", st, body)
	}
	eventually(t, 120*time.Second, 200*time.Millisecond, "the deleted tenant's row gone", func() error {
		if st, _ := s.api(http.MethodGet, "/admin/tenants/"+tns[1].ID, "", adminToken, nil); st != http.StatusNotFound {
			return errNotYet
		}
		return nil
	})
	procs := append(s.workers, s.enqueue)
	for _, p := range procs {
		if err, _, exited := p.signal(syscall.SIGTERM, 30*time.Second); !exited || err != nil {
			t.Errorf("%s on SIGTERM: exited %v, %v", p.name, exited, err)
		}
	}
	cli("dispatch-mode", "plain")
	cli("dispatch-mode", "fair")

	refused, err := admin.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range refused {
		if m, ok := e.(map[any]any); !ok || m["object"] != "info" || !infoDeny {
			t.Errorf("Redis refused: %v", e)
		}
	}
	for _, p := range procs {
		warned := p.logContains("could not check redis maxmemory-policy")
		if warned != infoDeny {
			t.Errorf("%s warned that maxmemory-policy was not checked: %v, want %v", p.name, warned, infoDeny)
		}
	}
}
