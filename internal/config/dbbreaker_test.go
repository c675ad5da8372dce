package config

import (
	"strings"
	"testing"
	"time"
)

// TestDBBreakerSettings: DB_BREAKER_PROBE_MIN, _MAX and _TIMEOUT set the
// worker's database breaker timings; unset, the defaults (a maximum
// unset follows a larger minimum); a value that is not a positive
// duration, out of its range, or a maximum below the minimum is refused
// with the variable's name.
func TestDBBreakerSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vars                 map[string]string
		wantMin, wantMax, to time.Duration
	}{
		{nil, DefaultDBBreakerProbeMin, DefaultDBBreakerProbeMax, DefaultDBBreakerProbeTimeout},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "250ms", "DB_BREAKER_PROBE_MAX": "2s", "DB_BREAKER_PROBE_TIMEOUT": "1500ms"},
			250 * time.Millisecond, 2 * time.Second, 1500 * time.Millisecond},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "45s"}, 45 * time.Second, 45 * time.Second, DefaultDBBreakerProbeTimeout},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "5s", "DB_BREAKER_PROBE_MAX": "5s"}, 5 * time.Second, 5 * time.Second, DefaultDBBreakerProbeTimeout},
	} {
		c, err := FromEnv(envWithDatabase(tc.vars))
		if err != nil {
			t.Errorf("%v: %v", tc.vars, err)
			continue
		}
		if c.DBBreakerProbeMin != tc.wantMin || c.DBBreakerProbeMax != tc.wantMax || c.DBBreakerProbeTimeout != tc.to {
			t.Errorf("%v: min %v, max %v, timeout %v; want %v, %v, %v", tc.vars,
				c.DBBreakerProbeMin, c.DBBreakerProbeMax, c.DBBreakerProbeTimeout, tc.wantMin, tc.wantMax, tc.to)
		}
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"DB_BREAKER_PROBE_MIN": "soon"}, `DB_BREAKER_PROBE_MIN: must be a positive duration`},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "0s"}, `DB_BREAKER_PROBE_MIN: must be a positive duration`},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "-1s"}, `DB_BREAKER_PROBE_MIN: must be a positive duration`},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "500us"}, `DB_BREAKER_PROBE_MIN: must be between 1ms and 1m0s, got 500µs`},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "2m"}, `DB_BREAKER_PROBE_MIN: must be between 1ms and 1m0s, got 2m0s`},
		{map[string]string{"DB_BREAKER_PROBE_MAX": "0"}, `DB_BREAKER_PROBE_MAX: must be a positive duration`},
		{map[string]string{"DB_BREAKER_PROBE_MIN": "10s", "DB_BREAKER_PROBE_MAX": "5s"},
			`DB_BREAKER_PROBE_MAX: must be between DB_BREAKER_PROBE_MIN (10s) and 10m0s, got 5s`},
		{map[string]string{"DB_BREAKER_PROBE_MAX": "500ms"}, `DB_BREAKER_PROBE_MAX: must be between DB_BREAKER_PROBE_MIN (1s) and 10m0s, got 500ms`},
		{map[string]string{"DB_BREAKER_PROBE_MAX": "1h"}, `DB_BREAKER_PROBE_MAX: must be between DB_BREAKER_PROBE_MIN (1s) and 10m0s, got 1h0m0s`},
		{map[string]string{"DB_BREAKER_PROBE_TIMEOUT": "x"}, `DB_BREAKER_PROBE_TIMEOUT: must be a positive duration`},
		{map[string]string{"DB_BREAKER_PROBE_TIMEOUT": "1m"}, `DB_BREAKER_PROBE_TIMEOUT: must be between 1ms and 30s, got 1m0s`},
	} {
		_, err := FromEnv(envWithDatabase(tc.vars))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want an error with %q", tc.vars, err, tc.want)
		}
	}
}
