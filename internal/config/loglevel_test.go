package config

import (
	"log/slog"
	"strings"
	"testing"
)

// TestLogLevelAboveErrorIsRefused: LOG_LEVEL takes slog's level names
// with an offset ("warn+2", "debug-4"), and one above error ("error+1",
// "info+9") hid every line the binaries write, errors included: a
// worker that could not reach its database exited with status 1 and not
// a word. Such a level is refused at start, naming LOG_LEVEL; offsets up
// to error are still accepted.
func TestLogLevelAboveErrorIsRefused(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"error+1", "ERROR+4", "warn+5", "info+9"} {
		_, err := FromEnv(envWithDatabase(map[string]string{"LOG_LEVEL": v}))
		if err == nil || !strings.Contains(err.Error(), "LOG_LEVEL: ") || !strings.Contains(err.Error(), v) {
			t.Errorf("LOG_LEVEL=%s: error %v, want one naming LOG_LEVEL and the value", v, err)
		}
	}
	for v, want := range map[string]slog.Level{"error": slog.LevelError, "warn+4": slog.LevelError, "warn+1": slog.LevelWarn + 1, "debug-4": slog.LevelDebug - 4} {
		c, err := FromEnv(envWithDatabase(map[string]string{"LOG_LEVEL": v}))
		if err != nil || c.LogLevel != want {
			t.Errorf("LOG_LEVEL=%s: %v, %v; want %v", v, c.LogLevel, err, want)
		}
	}
}
