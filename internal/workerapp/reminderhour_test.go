package workerapp

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/config"
)

// TestRunWarnsWhenTheSweepMayMissTheReminderHour: with REMINDER_SEND_HOUR
// set, a sweep schedule that does not fire every hour (daily, every other
// hour) may run before the hour in some tenant's zone every day, and that
// tenant's sweep would never enqueue a reminder: the worker warns at start,
// naming both settings. An hourly schedule, or the default hour 0, gets no
// warning. (The start itself is cut short: nothing listens at the URLs.)
func TestRunWarnsWhenTheSweepMayMissTheReminderHour(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		hour, cron string
		warn       bool
	}{
		{"9", "0 6 * * *", true},
		{"9", "@every 2h", true},
		{"9", "CRON_TZ=Europe/Berlin 0 10 * * *", true},
		{"9", "0 * * * *", false},
		{"9", "*/30 * * * *", false},
		{"9", "", false}, // the hourly default
		{"", "0 6 * * *", false},
		{"0", "0 6 * * *", false},
	} {
		cfg, err := config.FromEnv(func(k string) string {
			return map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1",
				"REMINDER_SEND_HOUR": c.hour, "OVERDUE_SWEEP_CRON": c.cron}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // only the start's first steps run
		var logs bytes.Buffer
		_ = Run(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
		var warned string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "REMINDER_SEND_HOUR") && strings.Contains(l, `"level":"WARN"`) {
				warned = l
			}
		}
		if (warned != "") != c.warn {
			t.Errorf("REMINDER_SEND_HOUR=%q OVERDUE_SWEEP_CRON=%q: warned %v, want %v; log:\n%s", c.hour, c.cron, warned != "", c.warn, logs.String())
		}
		if c.warn && (!strings.Contains(warned, `"reminder_send_hour":9`) || !strings.Contains(warned, `"sweep_schedule":"`+c.cron+`"`)) {
			t.Errorf("warning %s, want reminder_send_hour 9 and sweep_schedule %q", warned, c.cron)
		}
	}
}
