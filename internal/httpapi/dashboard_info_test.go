package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestDashboardRedisInfoWithoutINFO: the dashboard's Redis page
// (/admin/dashboard/api/redis_info) asks Redis for INFO, which a
// restricted ACL user (+@all -@dangerous, a managed Redis's default) may
// not run. asynqmon answered 500 with Redis's NOPERM text, and the page
// showed only "Could not retrieve redis live data". It answers 200 with
// the page's data without INFO: info_refused, every figure the page shows
// "unknown", and raw_info saying why. A user that may run INFO still gets
// asynqmon's answer, and the rest of the dashboard works either way.
func TestDashboardRedisInfoWithoutINFO(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{})
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-@dangerous").Err(); err != nil {
		t.Fatal(err)
	}
	type redisInfo struct {
		Address     string            `json:"address"`
		Info        map[string]string `json:"info"`
		RawInfo     string            `json:"raw_info"`
		InfoRefused bool              `json:"info_refused"`
	}
	for _, c := range []struct {
		name    string
		user    string
		refused bool
	}{
		{"restricted user", "app", true},
		{"default user", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := setupOn(t, rs.Addr(), nil, func(o *httpapi.Options) {
				opt := asynq.RedisClientOpt{Addr: rs.Addr()}
				if c.user != "" {
					opt.Username, opt.Password = c.user, "pw"
				}
				o.RedisConnOpt = opt
			})
			r := b.admin(t, http.MethodGet, "/admin/dashboard/api/redis_info", "")
			wantStatus(t, r, http.StatusOK)
			var body redisInfo
			decode(t, r.body, &body)
			if body.InfoRefused != c.refused {
				t.Errorf("info_refused %v, want %v; body %.300s", body.InfoRefused, c.refused, r.body)
			}
			if c.refused {
				if v := body.Info["redis_version"]; v != "unknown" {
					t.Errorf("redis_version %q, want unknown", v)
				}
				if !strings.Contains(body.RawInfo, "may not run INFO") || !strings.Contains(body.RawInfo, "NOPERM") {
					t.Errorf("raw_info %q does not say the Redis user may not run INFO", body.RawInfo)
				}
				if body.Address != rs.Addr() {
					t.Errorf("address %q, want %q", body.Address, rs.Addr())
				}
			} else if v := body.Info["redis_version"]; v == "" || v == "unknown" {
				t.Errorf("redis_version %q: want the server's", v)
			}
			wantStatus(t, b.admin(t, http.MethodGet, "/admin/dashboard/api/queues", ""), http.StatusOK)
		})
	}
}

// TestDashboardRedisInfoWithINFORenamed: a Redis hardened with
// rename-command INFO "" answers the dashboard's Redis page's INFO
// "unknown command", and asynqmon answered 500 with that text, as for
// TestDashboardRedisInfoWithoutINFO's restricted user: the page's data
// answers 200 instead, info_refused, every figure "unknown", raw_info
// saying that Redis does not run INFO.
func TestDashboardRedisInfoWithINFORenamed(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t, testenv.RedisOptions{ExtraArgs: []string{"--rename-command", "INFO", ""}})
	b := setupOn(t, rs.Addr(), nil)
	r := b.admin(t, http.MethodGet, "/admin/dashboard/api/redis_info", "")
	wantStatus(t, r, http.StatusOK)
	var body struct {
		Info        map[string]string `json:"info"`
		RawInfo     string            `json:"raw_info"`
		InfoRefused bool              `json:"info_refused"`
	}
	decode(t, r.body, &body)
	if !body.InfoRefused || body.Info["redis_version"] != "unknown" {
		t.Errorf("info_refused %v, redis_version %q, want true and unknown; body %.300s", body.InfoRefused, body.Info["redis_version"], r.body)
	}
	if !strings.Contains(body.RawInfo, "does not run INFO") || !strings.Contains(body.RawInfo, "unknown command") {
		t.Errorf("raw_info %q does not say that Redis does not run INFO", body.RawInfo)
	}
	wantStatus(t, b.admin(t, http.MethodGet, "/admin/dashboard/api/queues", ""), http.StatusOK)
}
