package config

import (
	"strings"
	"testing"
	"time"
)

// TestTimeoutsPastAYearAreRefused: SHUTDOWN_TIMEOUT, REQUEST_TIMEOUT and
// ADMIN_REQUEST_TIMEOUT are at most MaxTimeout. The binaries add margins
// to them (the worker's stop limit adds 15 s and more to
// SHUTDOWN_TIMEOUT, the enqueue service's write timeout 15 s to the
// larger request timeout): near the largest duration Go has
// (2562047h47m16s) the sum wrapped around to a negative duration, and a
// worker so configured exited with status 1 at its first SIGTERM,
// logging "worker stop took too long" with a negative wait, without
// letting its tasks finish. Such a value stops the start, naming the
// variable and the value; a year is still accepted.
func TestTimeoutsPastAYearAreRefused(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"SHUTDOWN_TIMEOUT", "REQUEST_TIMEOUT", "ADMIN_REQUEST_TIMEOUT"} {
		for _, v := range []string{"2562047h47m16s", "8761h"} {
			_, err := FromEnv(envWithDatabase(map[string]string{name: v}))
			if err == nil {
				t.Errorf("%s=%s: accepted", name, v)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, name+": ") || !strings.Contains(msg, "at most 8760h") {
				t.Errorf("%s=%s: error %q, want it to name the variable and the bound", name, v, msg)
			}
		}
		c, err := FromEnv(envWithDatabase(map[string]string{name: "8760h"}))
		if err != nil {
			t.Errorf("%s=8760h: %v", name, err)
			continue
		}
		if got := map[string]time.Duration{"SHUTDOWN_TIMEOUT": c.ShutdownTimeout, "REQUEST_TIMEOUT": c.RequestTimeout, "ADMIN_REQUEST_TIMEOUT": c.AdminRequestTimeout}[name]; got != MaxTimeout {
			t.Errorf("%s=8760h: got %v", name, got)
		}
	}
}
