package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestDeletedTenantsLeaveNoRedisState runs a workload over many tenants
// (single and bulk renders, reminders, sweeps, migrations, pause, resume,
// drain, suspension, a limits change), deletes every tenant, and then
// accounts for every Redis key: a deleted tenant may leave only what the
// README and docs/operations.md document (asynq's retention of its finished tasks, whose keys
// expire), never a key, hash field or set member of its own that nothing
// removes.
func TestDeletedTenantsLeaveNoRedisState(t *testing.T) {
	t.Parallel()
	n := envInt(t, "LEAK_TENANTS", 40)
	ctx := context.Background()
	s := newStack(t, stackOptions{workers: 1, concurrency: 4, sweepCron: "@every 2s"})
	tenants := s.provision(tenantSlugs("leak", n), tenantName)
	for _, tn := range tenants {
		s.seed(tn, invoiceSeed{overdue: 3, sent: 2, lines: 2})
	}
	admin := func(method, path string, body any) {
		t.Helper()
		status, b := s.api(method, path, "", adminToken, body)
		if status/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, status, b)
		}
	}
	parallel(n, 4, func(i int) {
		tn := tenants[i]
		switch i % 5 {
		case 0:
			admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/pause", nil)
		case 1:
			admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", nil)
		}
		if i%5 != 1 {
			s.mustPost(tn, "pdf", 1)
			s.mustPost(tn, "reminders", 1)
			if st, b, err := httpDo(ctx, http.MethodPost, s.enqueue.url("/v1/invoices/pdf"), tn.host(), tn.Key,
				[]byte(`{"invoice_ids":[1,2,3,4]}`)); err != nil || st != http.StatusAccepted {
				t.Errorf("bulk %s: %d %s %v", tn.Slug, st, b, err)
			}
		}
		switch i % 5 {
		case 0:
			admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/drain", nil)
			admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/resume", nil)
		case 1:
			admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/resume", nil)
		case 2:
			admin(http.MethodPut, "/admin/tenants/"+tn.ID+"/limits", map[string]int{"weight": 3, "max_running": 2})
		}
	})
	// Archived tasks (records kept for their tenants): renders of invoices
	// deleted after the request.
	for i, tn := range tenants {
		if i%5 != 3 {
			continue
		}
		admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/pause", nil)
		s.mustPost(tn, "pdf", 5)
		if _, err := s.db.Exec(ctx, fmt.Sprintf(`DELETE FROM %s.invoices WHERE id = 5`, tn.Schema)); err != nil {
			t.Fatal(err)
		}
		admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/resume", nil)
	}
	admin(http.MethodPost, "/admin/migrations", nil)
	time.Sleep(3 * time.Second) // a sweep or two
	s.waitDrained(120 * time.Second)

	// Deletions with work in flight: a bulk render each, some tenants
	// suspended or paused with it.
	parallel(n, 4, func(i int) {
		tn := tenants[i]
		if st, b, err := httpDo(ctx, http.MethodPost, s.enqueue.url("/v1/invoices/pdf"), tn.host(), tn.Key,
			[]byte(`{"invoice_ids":[1,2,3,4]}`)); err != nil || st != http.StatusAccepted {
			t.Errorf("bulk %s: %d %s %v", tn.Slug, st, b, err)
		}
		s.mustPost(tn, "reminders", 2)
		switch i % 3 {
		case 0:
			admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/suspend", nil)
		case 1:
			admin(http.MethodPost, "/admin/tenants/"+tn.ID+"/queue/pause", nil)
		}
	})
	ids := make([]string, n)
	for i, tn := range tenants {
		ids[i] = tn.ID
		admin(http.MethodDelete, "/admin/tenants/"+tn.ID, nil)
	}
	eventually(t, 120*time.Second, 250*time.Millisecond, "tenants erased", func() error {
		var left int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM tenancy.tenants WHERE id = ANY($1)`, ids).Scan(&left); err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d tenants left", left)
		}
		return nil
	})
	s.waitDrained(60 * time.Second)
	time.Sleep(3 * time.Second) // late reports, heartbeats

	leaks := redisTenantLeftovers(t, ctx, s.rdb, ids)
	sort.Strings(leaks)
	for i, l := range leaks {
		if i == 40 {
			t.Errorf("... and %d more", len(leaks)-i)
			break
		}
		t.Errorf("deleted tenant's state left in Redis without expiry: %s", l)
	}

	var schemas int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant_leak%'`).Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if schemas != 0 {
		t.Errorf("%d schemas of deleted tenants left", schemas)
	}
	for _, id := range ids {
		if _, err := os.Lstat(s.docsDir + "/" + id); err == nil {
			t.Errorf("documents directory of deleted tenant %s left", id)
			break
		}
	}
}

// redisTenantLeftovers lists what Redis keeps of the tenants in ids with no
// expiry: keys naming one, and fields or members naming one (or a task of
// one) in keys without a TTL.
func redisTenantLeftovers(t *testing.T, ctx context.Context, rdb redis.UniversalClient, ids []string) []string {
	t.Helper()
	names := func(s string) string {
		for _, id := range ids {
			if strings.Contains(s, id) {
				return id
			}
		}
		return ""
	}
	var out []string
	var keys []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	byPattern := map[string]int{}
	for _, k := range keys {
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if id := names(k); id != "" {
			pat := strings.ReplaceAll(k, id, "<T>")
			if i := strings.Index(pat, ":t:"); i >= 0 && strings.HasPrefix(pat, "asynq:") {
				pat = pat[:i] + ":t:<task of T>"
			}
			if strings.HasPrefix(pat, "asynq:") && strings.Contains(pat, ":t:") {
				f, err := rdb.HMGet(ctx, k, "state", "type").Result()
				if err != nil {
					t.Fatal(err)
				}
				state, _ := f[0].(string)
				pat = fmt.Sprintf("%s state=%s", pat, state)
				if state == "completed" || state == "archived" {
					// asynq's retention: its janitor deletes them.
					byPattern[pat]++
					continue
				}
			}
			byPattern[fmt.Sprintf("%s ttl>0=%v", pat, ttl > 0)]++
			if ttl < 0 {
				out = append(out, fmt.Sprintf("key %s (%s)", k, typ))
			}
			continue
		}
		if ttl > 0 {
			continue
		}
		var members []string
		switch typ {
		case "hash":
			members, err = rdb.HKeys(ctx, k).Result()
		case "set":
			members, err = rdb.SMembers(ctx, k).Result()
		case "zset":
			members, err = rdb.ZRange(ctx, k, 0, -1).Result()
		case "list":
			members, err = rdb.LRange(ctx, k, 0, -1).Result()
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(k, "asynq:") && (strings.HasSuffix(k, ":completed") || strings.HasSuffix(k, ":archived")) {
			continue // asynq's retention
		}
		if strings.HasPrefix(k, "fair:") && (strings.HasSuffix(k, "}:hb") || strings.HasSuffix(k, "}:drained")) {
			continue // trimmed by score at each worker heartbeat
		}
		for _, m := range members {
			if id := names(m); id != "" {
				out = append(out, fmt.Sprintf("%s %s member/field %s", typ, k, m))
			}
		}
	}
	t.Logf("%d keys in Redis; keys naming a deleted tenant by pattern:", len(keys))
	var pats []string
	for p, c := range byPattern {
		pats = append(pats, fmt.Sprintf("  %6d %s", c, p))
	}
	sort.Strings(pats)
	for _, p := range pats {
		t.Log(p)
	}
	return out
}
