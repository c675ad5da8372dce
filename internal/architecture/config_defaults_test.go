package architecture

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/devstack"
	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/storage"
)

// shortDuration writes d as the README does: 5m, 25s, 20ms.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(strings.TrimSuffix(s, "0s"), "0m")
	if strings.HasSuffix(s, "h") || strings.HasSuffix(s, "m") || strings.HasSuffix(s, "s") {
		return s
	}
	return d.String()
}

// TestReadmeConfigurationDefaults: the default the README's configuration
// table gives a variable (a lone code span in its second column) is the
// one the binaries apply when it is unset.
func TestReadmeConfigurationDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(func(name string) string {
		if name == "DATABASE_URL" {
			return "postgres://app@db/inv"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	code := map[string]string{
		"REDIS_URL":                c.RedisURL,
		"DOMAIN_SUFFIX":            c.DomainSuffix,
		"AUTH_FAILURES_PER_MINUTE": fmt.Sprint(httpapi.DefaultAuthFailuresPerMinute),
		"WORKER_CONCURRENCY":       fmt.Sprint(c.WorkerConcurrency),
		"DB_KEEP_CONNS":            fmt.Sprint(c.DBKeepConns),
		"OVERDUE_SWEEP_CRON":       c.OverdueSweepCron,
		"DOCUMENTS_SWEEP_CRON":     c.DocumentsSweepCron,
		"REMINDER_SEND_HOUR":       fmt.Sprint(c.ReminderSendHour),
		"SCHEDULER_ENABLED":        fmt.Sprint(c.SchedulerEnabled),
		"REQUEST_TIMEOUT":          shortDuration(c.RequestTimeout),
		"ADMIN_REQUEST_TIMEOUT":    shortDuration(c.AdminRequestTimeout),
		"API_TENANT_DB_CONNS":      fmt.Sprint(httpapi.DefaultTenantDBConns),
		"SHUTDOWN_TIMEOUT":         shortDuration(c.ShutdownTimeout),
		"MAIL_FROM":                c.MailFrom,
		"SMTP_TLS":                 c.SMTPTLS,
		"OUTBOX_DIR":               c.OutboxDir,
		"DOCUMENTS_DIR":            c.DocumentsDir,
		"PDF_MAX_LINES":            fmt.Sprint(pdf.DefaultMaxLines),
		"PDF_MAX_LINE_BYTES":       fmt.Sprint(pdf.DefaultMaxLineBytes),
		"PDF_MAX_BYTES":            fmt.Sprint(pdf.DefaultMaxBytes),
		"PDF_MAX_PAGES":            fmt.Sprint(pdf.DefaultMaxPages),
		"LOG_FORMAT":               c.LogFormat,
		"LOG_LEVEL":                strings.ToLower(c.LogLevel.String()),
		"TENANT_CACHE_TTL":         shortDuration(storage.DefaultCacheRedisTTL),
		"ALLOW_TENANT_HEADER":      fmt.Sprint(c.AllowTenantHeader),
		"DASHBOARD_WRITABLE":       fmt.Sprint(c.DashboardWritable),
		"FAIR_DISPATCH":            fmt.Sprint(c.FairDispatch),
		"FAIR_MAX_WAITING_TOTAL":   fmt.Sprint(fair.DefaultMaxWaitingTotal),
		"FAIR_PENDING_TIME":        shortDuration(c.FairPendingTime),
		"QUEUE_SHARDS":             fmt.Sprint(c.QueueShards),
		"WORKER_QUEUE_CLASSES":     strings.Join(c.WorkerQueueClasses, ","),
		"TASK_CHECK_INTERVAL":      shortDuration(c.TaskCheckInterval),
		"IDLE_RECHECK_INTERVAL":    shortDuration(c.IdleRecheckInterval),
		"DB_BREAKER_PROBE_MIN":     shortDuration(c.DBBreakerProbeMin),
		"DB_BREAKER_PROBE_MAX":     shortDuration(c.DBBreakerProbeMax),
		"DB_BREAKER_PROBE_TIMEOUT": shortDuration(c.DBBreakerProbeTimeout),
		"NOT_READY_DELAY_MIN":      shortDuration(c.NotReadyDelayMin),
		"NOT_READY_DELAY_MAX":      shortDuration(c.NotReadyDelayMax),
		"REDIS_AUTOPIPELINE":       fmt.Sprint(c.RedisAutoPipeline),
	}
	// Defaults that are another variable's value.
	sameAs := func(name string, same bool) string {
		if same {
			return name
		}
		return "not " + name
	}
	code["MIGRATIONS_DATABASE_URL"] = sameAs("DATABASE_URL", c.MigrationsDatabaseURL == c.DatabaseURL)
	code["TENANT_DB_MAX_CONNS"] = sameAs("DB_MAX_CONNS", c.TenantDBMaxConns == c.DBMaxConns)
	code["QUEUE_SHARDS_SERVED"] = sameAs("QUEUE_SHARDS", c.QueueShardsServed == c.QueueShards)
	row := regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\| `([^`]*)` \\|")
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(section(t, readDoc(t, "README.md"), "Configuration"), -1) {
		name, doc := m[1], m[2]
		want, ok := code[name]
		if !ok {
			t.Errorf("the README gives %s the default `%s`; add it to this test", name, doc)
			continue
		}
		seen[name] = true
		if doc != want {
			t.Errorf("README: %s defaults to `%s`; the binaries use %q", name, doc, want)
		}
	}
	for name := range code {
		if !seen[name] {
			t.Errorf("the README's configuration table gives %s no default in a code span", name)
		}
	}
	if got := c.HTTPAddrOr(config.DefaultEnqueueHTTPAddr) + " " + c.HTTPAddrOr(config.DefaultWorkerHTTPAddr); got != ":8080 :9090" ||
		!strings.Contains(section(t, readDoc(t, "README.md"), "Configuration"), "| `HTTP_ADDR` | enqueue `:8080`, worker `:9090` |") {
		t.Errorf("HTTP_ADDR defaults %s, or the README's row changed", got)
	}
}

// TestReadmeDevStackFlags: the README's table of the dev stack's flags and
// variables (under "What you will see") names every flag `worker -dev -h`
// lists and no other, with the defaults it applies, and names the
// variables its help names.
func TestReadmeDevStackFlags(t *testing.T) {
	t.Parallel()
	var stdout, stderr strings.Builder
	if code := devstack.Main([]string{"-dev", "-h"}, &stdout, &stderr, func(string) string { return "" }); code != 0 {
		t.Fatalf("worker -dev -h: exit %d\n%s", code, stderr.String())
	}
	help := stdout.String() // -h prints the usage on stdout, as the enqueue CLI does
	sec := section(t, readDoc(t, "README.md"), "What you will see")
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)`(?:, `([^`]+)`)? \\| ([^|]*) \\|").FindAllStringSubmatch(sec, -1) {
		rows[m[1]] = strings.TrimSpace(m[3])
		if m[2] != "" {
			rows[m[2]] = strings.TrimSpace(m[3])
		}
	}
	if len(rows) < 5 {
		t.Fatalf("the README's dev stack table has %d rows; the table seems to be gone", len(rows))
	}
	var flags []string
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		if m[1] == "dev" {
			continue
		}
		flags = append(flags, "-"+m[1])
		if _, ok := rows["-"+m[1]]; !ok {
			t.Errorf("worker -dev has the flag -%s, which the README's dev stack table does not name", m[1])
		}
	}
	if len(flags) < 3 {
		t.Fatalf("worker -dev -h lists %d flags:\n%s", len(flags), help)
	}
	_, env, _ := strings.Cut(help, "Environment:")
	env, _, _ = strings.Cut(env, "flags:")
	vars := regexp.MustCompile(`\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b`).FindAllString(env, -1)
	if len(vars) < 2 {
		t.Fatalf("worker -dev -h names %d variables:\n%s", len(vars), help)
	}
	for _, v := range vars {
		if _, ok := rows[v]; !ok {
			t.Errorf("worker -dev reads %s, which the README's dev stack table does not name", v)
		}
	}
	for name := range rows {
		if !slices.Contains(flags, name) && !slices.Contains(vars, name) {
			t.Errorf("the README's dev stack table has a row for %s, which worker -dev -h does not name", name)
		}
	}
	for name, want := range map[string]string{"-http-addr": "`" + devstack.DefaultHTTPAddr + "`", "-data-dir": "`" + devstack.DefaultDataDir + "`"} {
		if rows[name] != want {
			t.Errorf("README: worker -dev's %s defaults to %s; the dev stack uses %s", name, rows[name], want)
		}
	}
	if rows["-worker-addr"] != "a free port" || !strings.HasSuffix(devstack.DefaultWorkerAddr, ":0") {
		t.Errorf("README: worker -dev's -worker-addr defaults to %q; the dev stack uses %s", rows["-worker-addr"], devstack.DefaultWorkerAddr)
	}
}
