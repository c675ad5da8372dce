package httpapi

import (
	"bytes"
	"net/http"
	"strings"
	"sync"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// dashboardRedisInfoPath is the dashboard's Redis page data (asynqmon's
// redis_info: INFO, or CLUSTER INFO and CLUSTER NODES on a cluster).
const dashboardRedisInfoPath = DashboardPath + "/api/redis_info"

// redisInfoUnknown is what the dashboard's Redis page shows of each server
// figure INFO would have given.
const redisInfoUnknown = "unknown"

// redisInfoFields are the INFO fields asynqmon's Redis page shows.
var redisInfoFields = []string{
	"redis_version", "uptime_in_days", "connected_clients", "connected_slaves",
	"used_memory_human", "used_memory_peak_human", "mem_fragmentation_ratio",
	"rdb_changes_since_last_save", "rdb_last_save_time",
}

// redisInfoRefused answers the dashboard's Redis page data when the Redis
// user may not run INFO: asynqmon's answer (address, info, raw_info,
// cluster) without INFO's figures, and InfoRefused.
type redisInfoRefused struct {
	Address string            `json:"address"`
	Info    map[string]string `json:"info"`
	RawInfo string            `json:"raw_info"`
	Cluster bool              `json:"cluster"`
	// InfoRefused says the figures are unknown because Redis refused INFO.
	InfoRefused bool `json:"info_refused"`
}

// dashboardRedisInfo wraps the dashboard: when Redis refuses the Redis
// page's INFO to the REDIS_URL user (NOPERM: an ACL user without
// @dangerous, a managed Redis's default) or does not know it (disabled by
// rename-command, "ERR unknown command"), asynqmon answers 500 with
// Redis's text, and the page shows nothing but "Could not retrieve redis
// live data". The page's data is answered instead, 200, every figure
// "unknown", raw_info saying why INFO did not run, and info_refused true
// (docs/operations.md, "Redis user"). Every other answer, the page's too
// when INFO runs, is asynqmon's as it is.
func dashboardRedisInfo(next http.Handler, opt asynq.RedisConnOpt) http.Handler {
	target := sync.OnceValues(func() (string, bool) { return redisTarget(opt) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != dashboardRedisInfoPath || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}}
		next.ServeHTTP(rec, r)
		denied := bytes.HasPrefix(rec.body.Bytes(), []byte("NOPERM"))
		if rec.status == http.StatusInternalServerError && (denied || bytes.HasPrefix(rec.body.Bytes(), []byte("ERR unknown command"))) {
			info := make(map[string]string, len(redisInfoFields))
			for _, f := range redisInfoFields {
				info[f] = redisInfoUnknown
			}
			why := "The REDIS_URL user may not run INFO ("
			fix := "Allow the user INFO (+info) to see them, or read them in the Redis service's own console."
			if !denied {
				why = "Redis does not run INFO, disabled by rename-command ("
				fix = "Read them in the Redis server's own console, with INFO's new name."
			}
			addr, cluster := target()
			writeJSON(w, http.StatusOK, redisInfoRefused{
				Address: addr,
				Info:    info,
				RawInfo: why + strings.TrimSpace(rec.body.String()) + "): " +
					"the figures of the Redis server are unknown here; queues, tasks and servers are shown as usual. " + fix,
				Cluster:     cluster,
				InfoRefused: true,
			})
			return
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		if rec.status != 0 {
			w.WriteHeader(rec.status)
		}
		_, _ = w.Write(rec.body.Bytes())
	})
}

// bufferedResponse keeps an answer of the dashboard's Redis page data
// (a few KiB) until it is known whether Redis refused INFO.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// redisTarget returns what asynqmon shows of opt's Redis: the server's
// address, or a Redis Cluster's seed addresses joined by "," and true.
// The client it makes to read them never connects.
func redisTarget(opt asynq.RedisConnOpt) (addr string, cluster bool) {
	switch c := opt.MakeRedisClient().(type) {
	case *redis.Client:
		defer c.Close()
		return c.Options().Addr, false
	case *redis.ClusterClient:
		defer c.Close()
		return strings.Join(c.Options().Addrs, ","), true
	}
	return "", false
}
