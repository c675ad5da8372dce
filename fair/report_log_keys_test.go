package fair_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestReporterDropLinesNameTheTask: the lines of a completion report the
// Reporter drops (one Complete would refuse, one made after Close) carry
// the report's task_id, task_type and tenant_id, as every line about a
// task does (README, LOG_FORMAT).
func TestReporterDropLinesNameTheTask(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	var logs testenv.LogBuffer
	rep := fair.New(rdb, fair.Config{}).NewReporter(slog.New(slog.NewJSONHandler(&logs, nil)))
	rep.Report(fair.Report{Queue: "bad queue", TaskID: "invoice:pdf:tn_a:1", TenantID: "tn_a", Type: "invoice:pdf", Cost: time.Millisecond})
	rep.Close(context.Background())
	rep.Report(fair.Report{Queue: "default", TaskID: "invoice:pdf:tn_a:2", TenantID: "tn_a", Type: "invoice:pdf", Cost: time.Millisecond})

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the two dropped reports' lines, got:\n%s", logs.String())
	}
	ids := []string{"invoice:pdf:tn_a:1", "invoice:pdf:tn_a:2"}
	for i, l := range lines {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		want := map[string]string{"task_id": ids[i], "task_type": "invoice:pdf", "tenant_id": "tn_a"}
		for k, v := range want {
			if line[k] != v {
				t.Errorf("%q: %s = %v, want %q", line["msg"], k, line[k], v)
			}
		}
	}
}
