package config

import (
	"strings"
	"testing"
	"time"
)

// TestNotReadyDelaySettings: NOT_READY_DELAY_MIN and _MAX bound the
// worker's wait before it tries again a task that met a not-ready wait;
// unset, the defaults (15-30 s; a maximum unset follows a larger
// minimum); a value that is not a positive duration, out of its range, or
// a maximum below the minimum is refused with the variable's name.
func TestNotReadyDelaySettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vars             map[string]string
		wantMin, wantMax time.Duration
	}{
		{nil, 15 * time.Second, 30 * time.Second},
		{map[string]string{"NOT_READY_DELAY_MIN": "1500ms", "NOT_READY_DELAY_MAX": "2s"}, 1500 * time.Millisecond, 2 * time.Second},
		{map[string]string{"NOT_READY_DELAY_MIN": "1s", "NOT_READY_DELAY_MAX": "1s"}, time.Second, time.Second},
		{map[string]string{"NOT_READY_DELAY_MIN": "45s"}, 45 * time.Second, 45 * time.Second},
		{map[string]string{"NOT_READY_DELAY_MIN": "2s"}, 2 * time.Second, 30 * time.Second},
		{map[string]string{"NOT_READY_DELAY_MAX": "2m"}, 15 * time.Second, 2 * time.Minute},
		{map[string]string{"NOT_READY_DELAY_MIN": "10m", "NOT_READY_DELAY_MAX": "10m"}, 10 * time.Minute, 10 * time.Minute},
	} {
		c, err := FromEnv(envWithDatabase(tc.vars))
		if err != nil {
			t.Errorf("%v: %v", tc.vars, err)
			continue
		}
		if c.NotReadyDelayMin != tc.wantMin || c.NotReadyDelayMax != tc.wantMax {
			t.Errorf("%v: min %v, max %v; want %v, %v", tc.vars, c.NotReadyDelayMin, c.NotReadyDelayMax, tc.wantMin, tc.wantMax)
		}
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"NOT_READY_DELAY_MIN": "soon"}, `NOT_READY_DELAY_MIN: must be a positive duration`},
		{map[string]string{"NOT_READY_DELAY_MIN": "0s"}, `NOT_READY_DELAY_MIN: must be a positive duration`},
		{map[string]string{"NOT_READY_DELAY_MIN": "-1s"}, `NOT_READY_DELAY_MIN: must be a positive duration`},
		{map[string]string{"NOT_READY_DELAY_MIN": "500us"}, `NOT_READY_DELAY_MIN: must be between 1s and 10m0s, got 500µs`},
		{map[string]string{"NOT_READY_DELAY_MIN": "999ms"}, `NOT_READY_DELAY_MIN: must be between 1s and 10m0s, got 999ms`},
		{map[string]string{"NOT_READY_DELAY_MIN": "11m"}, `NOT_READY_DELAY_MIN: must be between 1s and 10m0s, got 11m0s`},
		{map[string]string{"NOT_READY_DELAY_MAX": "0"}, `NOT_READY_DELAY_MAX: must be a positive duration`},
		{map[string]string{"NOT_READY_DELAY_MIN": "10s", "NOT_READY_DELAY_MAX": "5s"},
			`NOT_READY_DELAY_MAX: must be between NOT_READY_DELAY_MIN (10s) and 10m0s, got 5s`},
		{map[string]string{"NOT_READY_DELAY_MAX": "1s"}, `NOT_READY_DELAY_MAX: must be between NOT_READY_DELAY_MIN (15s) and 10m0s, got 1s`},
		{map[string]string{"NOT_READY_DELAY_MAX": "1h"}, `NOT_READY_DELAY_MAX: must be between NOT_READY_DELAY_MIN (15s) and 10m0s, got 1h0m0s`},
	} {
		_, err := FromEnv(envWithDatabase(tc.vars))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want an error with %q", tc.vars, err, tc.want)
		}
	}
}
