package workerapp

import (
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/worker"
)

// TestBreakerOptionsFollowConfig: the worker's database breakers take
// their timings from DB_BREAKER_PROBE_MIN, _MAX and _TIMEOUT, and the
// defaults config applies when they are unset are the breakers' own
// (config does not import the worker).
func TestBreakerOptionsFollowConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://app@db/inv",
		"DB_BREAKER_PROBE_MIN": "200ms", "DB_BREAKER_PROBE_MAX": "3s", "DB_BREAKER_PROBE_TIMEOUT": "750ms"}
	cfg, err := config.FromEnv(func(name string) string { return env[name] })
	if err != nil {
		t.Fatal(err)
	}
	o := breakerOptions(cfg)
	if o.ProbeMin != 200*time.Millisecond || o.ProbeMax != 3*time.Second || o.ProbeTimeout != 750*time.Millisecond {
		t.Errorf("breaker options %v, %v, %v; want 200ms, 3s, 750ms from the environment", o.ProbeMin, o.ProbeMax, o.ProbeTimeout)
	}
	if config.DefaultDBBreakerProbeMin != worker.DefaultBreakerProbeMin || config.DefaultDBBreakerProbeMax != worker.DefaultBreakerProbeMax ||
		config.DefaultDBBreakerProbeTimeout != worker.DefaultBreakerProbeTimeout {
		t.Errorf("config's breaker defaults %v, %v, %v differ from the worker's %v, %v, %v",
			config.DefaultDBBreakerProbeMin, config.DefaultDBBreakerProbeMax, config.DefaultDBBreakerProbeTimeout,
			worker.DefaultBreakerProbeMin, worker.DefaultBreakerProbeMax, worker.DefaultBreakerProbeTimeout)
	}
}
