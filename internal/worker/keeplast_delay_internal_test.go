package worker

import (
	"testing"
	"time"
)

// TestKeepDelayDefaultsToTheProductionBounds: the zero keepDelay (every
// chain but a test's, MuxOptions.lastAttemptKeep unset) brings a kept last
// attempt back 45 to 60 s later, past one and a half asynq leases; a test's
// bounds are used as given, and equal bounds give that delay.
func TestKeepDelayDefaultsToTheProductionBounds(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for range 200 {
		if d := (keepDelay{}).next(now).Sub(now); d < lastAttemptKeepMin || d >= lastAttemptKeepMax {
			t.Fatalf("zero keepDelay: back after %v, want %v to %v", d, lastAttemptKeepMin, lastAttemptKeepMax)
		}
		if d := (keepDelay{min: 500 * time.Millisecond, max: time.Second}).next(now).Sub(now); d < 500*time.Millisecond || d >= time.Second {
			t.Fatalf("keepDelay 500ms-1s: back after %v", d)
		}
	}
	if d := (keepDelay{min: time.Second, max: time.Second}).next(now).Sub(now); d != time.Second {
		t.Errorf("keepDelay 1s-1s: back after %v, want 1s", d)
	}
	if lastAttemptKeepMin < 45*time.Second {
		t.Errorf("lastAttemptKeepMin = %v: a kept attempt must wait out one and a half asynq leases (45 s)", lastAttemptKeepMin)
	}
}
