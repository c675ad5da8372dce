package config

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/tasks"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// envWithDatabase is env of vars with DATABASE_URL set, which every
// configuration needs, unless vars sets it.
func envWithDatabase(vars map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := vars[name]; ok || name != "DATABASE_URL" {
			return v
		}
		return "postgres://app@db/inv"
	}
}

func TestFromEnvDefaults(t *testing.T) {
	t.Parallel()
	c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://app@db/inv"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DatabaseURL:           "postgres://app@db/inv",
		MigrationsDatabaseURL: "postgres://app@db/inv",
		RedisURL:              DefaultRedisURL,
		DomainSuffix:          DefaultDomainSuffix,
		WorkerConcurrency:     10,
		OverdueSweepCron:      "0 * * * *",
		DocumentsSweepCron:    "30 3 * * *",
		SchedulerEnabled:      true,
		ShutdownTimeout:       25 * time.Second,
		RequestTimeout:        10 * time.Second,
		AdminRequestTimeout:   30 * time.Second,
		SMTPTLS:               "opportunistic",
		MailFrom:              DefaultMailFrom,
		OutboxDir:             DefaultOutboxDir,
		DocumentsDir:          DefaultDocumentsDir,
		LogFormat:             LogFormatText,
		LogLevel:              slog.LevelInfo,
		DBMaxConns:            14,
		DBPoolLanes:           14,
		DBKeepConns:           true,
		TenantDBMaxConns:      14,
		TenantDBMaxTasks:      8,
		DBBreakerProbeMin:     DefaultDBBreakerProbeMin,
		DBBreakerProbeMax:     DefaultDBBreakerProbeMax,
		DBBreakerProbeTimeout: DefaultDBBreakerProbeTimeout,
		NotReadyDelayMin:      DefaultNotReadyDelayMin,
		NotReadyDelayMax:      DefaultNotReadyDelayMax,
		RedisAutoPipeline:     true,
		FairDispatch:          true,
		FairPendingTime:       fair.DefaultPendingTime,
		TaskCheckInterval:     DefaultTaskCheckInterval,
		IdleRecheckInterval:   fair.DefaultIdleRecheck,
		QueueShards:           1,
		QueueShardsServed:     1,
		WorkerQueueClasses:    []string{"critical", "default", "low"},
	}
	if c.Plans.String() != fair.DefaultPlans().String() {
		t.Errorf("plans %v, want the defaults", c.Plans)
	}
	c.Plans = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.HTTPAddrOr(DefaultWorkerHTTPAddr) != ":9090" || c.HTTPAddrOr(DefaultEnqueueHTTPAddr) != ":8080" {
		t.Errorf("HTTP defaults %q %q", c.HTTPAddrOr(DefaultWorkerHTTPAddr), c.HTTPAddrOr(DefaultEnqueueHTTPAddr))
	}
	opt, err := c.RedisConnOpt()
	if err != nil || opt.(asynq.RedisClientOpt).Addr != "127.0.0.1:6379" {
		t.Errorf("RedisConnOpt = %#v, %v", opt, err)
	}
}

func TestFromEnvSet(t *testing.T) {
	t.Parallel()
	c, err := FromEnv(env(map[string]string{
		"DATABASE_URL":             "postgres://app@pgbouncer/inv?default_query_exec_mode=exec",
		"MIGRATIONS_DATABASE_URL":  "postgres://owner@db/inv",
		"REDIS_URL":                "redis-sentinel://:pw@s1:26379,s2:26379?master=mymaster",
		"DOMAIN_SUFFIX":            ".example.com",
		"ADMIN_TOKEN":              "an-admin-token-of-32-characters!",
		"AUTH_FAILURES_PER_MINUTE": "50",
		"CLIENT_IP_HEADER":         "X-Real-IP",
		"HTTP_ADDR":                "127.0.0.1:7000",
		"WORKER_CONCURRENCY":       " 20 ",
		"OVERDUE_SWEEP_CRON":       "@every 30s",
		"DOCUMENTS_SWEEP_CRON":     "off",
		"SCHEDULER_ENABLED":        "false",
		"SHUTDOWN_TIMEOUT":         "5s",
		"REQUEST_TIMEOUT":          "3s",
		"ADMIN_REQUEST_TIMEOUT":    "45s",
		"API_TENANT_DB_CONNS":      "6",
		"SMTP_URL":                 "smtp://u:p@mail:587",
		"MAIL_FROM":                "ar@example.com",
		"OUTBOX_DIR":               "/var/outbox",
		"DOCUMENTS_DIR":            "/var/docs",
		"PDF_MAX_LINES":            "200",
		"PDF_MAX_LINE_BYTES":       "4194304",
		"PDF_MAX_BYTES":            "1048576",
		"PDF_MAX_PAGES":            "500",
		"LOG_FORMAT":               "JSON",
		"LOG_LEVEL":                "debug",
		"ALLOW_TENANT_HEADER":      "true",
		"DASHBOARD_READONLY":       "0",
		"TENANT_CACHE_TTL":         "2m",
		"REDIS_AUTOPIPELINE":       "false",
		"DB_KEEP_CONNS":            "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MigrationsDatabaseURL != "postgres://owner@db/inv" || c.WorkerConcurrency != 20 || c.DBMaxConns != 24 ||
		c.SchedulerEnabled || c.ShutdownTimeout != 5*time.Second || c.RequestTimeout != 3*time.Second || c.AdminRequestTimeout != 45*time.Second || c.APITenantDBConns != 6 || c.LogFormat != LogFormatJSON ||
		c.LogLevel != slog.LevelDebug || !c.AllowTenantHeader || !c.DashboardWritable || c.TenantCacheTTL != 2*time.Minute || c.RedisAutoPipeline ||
		c.HTTPAddrOr(DefaultWorkerHTTPAddr) != "127.0.0.1:7000" || c.OverdueSweepCron != "@every 30s" || c.DocumentsSweepCron != DocumentsSweepOff ||
		c.AuthFailuresPerMinute != 50 || c.ClientIPHeader != "X-Real-IP" ||
		c.PDFMaxLines != 200 || c.PDFMaxLineBytes != 4<<20 || c.PDFMaxBytes != 1<<20 || c.PDFMaxPages != 500 || c.DBKeepConns {
		t.Errorf("config %+v", c)
	}
	if _, err := c.RedisConnOpt(); err != nil {
		t.Error(err)
	}
}

func TestFromEnvErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://db/inv"}
	cases := []struct {
		set  map[string]string
		want string
	}{
		{map[string]string{"DATABASE_URL": ""}, "DATABASE_URL: required"},
		{map[string]string{"WORKER_CONCURRENCY": "x"}, `WORKER_CONCURRENCY: must be a positive integer, got "x"`},
		{map[string]string{"ADMIN_REQUEST_TIMEOUT": "0s"}, "ADMIN_REQUEST_TIMEOUT: must be a positive duration"},
		{map[string]string{"WORKER_CONCURRENCY": "-1"}, `WORKER_CONCURRENCY: must be a positive integer, got "-1"`},
		{map[string]string{"DB_MAX_CONNS": "0"}, "DB_MAX_CONNS: must be a positive integer"},
		{map[string]string{"DB_POOL_LANES": "-2"}, "DB_POOL_LANES: must be a positive integer"},
		{map[string]string{"PDF_MAX_LINES": "0"}, "PDF_MAX_LINES: must be a positive integer"},
		{map[string]string{"PDF_MAX_LINE_BYTES": "-1"}, "PDF_MAX_LINE_BYTES: must be a positive integer"},
		{map[string]string{"PDF_MAX_BYTES": "1MB"}, "PDF_MAX_BYTES: must be a positive integer"},
		{map[string]string{"PDF_MAX_PAGES": "0"}, "PDF_MAX_PAGES: must be a positive integer"},
		{map[string]string{"PDF_MAX_PAGES": "10k"}, "PDF_MAX_PAGES: must be a positive integer"},
		{map[string]string{"WORKER_CONCURRENCY": "20", "DB_MAX_CONNS": "10"}, "DB_MAX_CONNS: 10 is smaller than WORKER_CONCURRENCY 20"},
		{map[string]string{"OVERDUE_SWEEP_CRON": "every hour"}, "OVERDUE_SWEEP_CRON: invalid schedule"},
		{map[string]string{"OVERDUE_SWEEP_CRON": "@every 1x"}, "OVERDUE_SWEEP_CRON: invalid schedule"},
		{map[string]string{"OVERDUE_SWEEP_CRON": "0 0 30 2 *"}, "OVERDUE_SWEEP_CRON: schedule \"0 0 30 2 *\" never fires"},
		{map[string]string{"REDIS_URL": "http://localhost"}, "REDIS_URL: "},
		{map[string]string{"SCHEDULER_ENABLED": "yes please"}, `SCHEDULER_ENABLED: must be true or false`},
		{map[string]string{"SHUTDOWN_TIMEOUT": "25"}, `SHUTDOWN_TIMEOUT: must be a positive duration such as 30s, got "25"`},
		{map[string]string{"TENANT_CACHE_TTL": "-1s"}, `TENANT_CACHE_TTL: must be a positive duration`},
		{map[string]string{"TENANT_CACHE_TTL": "500us"}, `TENANT_CACHE_TTL: at least 1ms, got 500µs`},
		{map[string]string{"DB_MAX_CONNS": "100000"}, `DB_MAX_CONNS: at most 10000, got 100000`},
		{map[string]string{"OVERDUE_SWEEP_CRON": "@every -30m"}, "OVERDUE_SWEEP_CRON: invalid schedule"},
		{map[string]string{"OVERDUE_SWEEP_CRON": "@every 0s"}, "OVERDUE_SWEEP_CRON: invalid schedule"},
		{map[string]string{"OVERDUE_SWEEP_CRON": "@every 500ms"}, "OVERDUE_SWEEP_CRON: invalid schedule"},
		{map[string]string{"OVERDUE_SWEEP_CRON": "@every 1.5s"}, "OVERDUE_SWEEP_CRON: invalid schedule"},
		{map[string]string{"OVERDUE_SWEEP_CRON": "CRON_TZ=Europe/Berlin @every -1m"}, "OVERDUE_SWEEP_CRON: invalid schedule"},
		{map[string]string{"DOCUMENTS_SWEEP_CRON": "daily"}, "DOCUMENTS_SWEEP_CRON: invalid schedule"},
		{map[string]string{"DOCUMENTS_SWEEP_CRON": "0 0 30 2 *"}, "DOCUMENTS_SWEEP_CRON: schedule \"0 0 30 2 *\" never fires"},
		{map[string]string{"WORKER_CONCURRENCY": "20000"}, `WORKER_CONCURRENCY: at most 10000, got 20000`},
		{map[string]string{"WORKER_CONCURRENCY": "9223372036854775807"}, `WORKER_CONCURRENCY: at most 10000, got 9223372036854775807`},
		{map[string]string{"LOG_FORMAT": "xml"}, `LOG_FORMAT: must be text or json, got "xml"`},
		{map[string]string{"LOG_LEVEL": "loud"}, `LOG_LEVEL: must be debug, info, warn or error`},
		{map[string]string{"DOMAIN_SUFFIX": "."}, `DOMAIN_SUFFIX: must name a domain`},
		{map[string]string{"DASHBOARD_READONLY": "maybe"}, `DASHBOARD_READONLY: must be true or false`},
		{map[string]string{"REDIS_AUTOPIPELINE": "on"}, `REDIS_AUTOPIPELINE: must be true or false`},
		{map[string]string{"DASHBOARD_WRITABLE": "perhaps"}, `DASHBOARD_WRITABLE: must be true or false`},
		{map[string]string{"DASHBOARD_WRITABLE": "true", "DASHBOARD_READONLY": "true"}, `DASHBOARD_WRITABLE "true" and DASHBOARD_READONLY "true" disagree`},
		{map[string]string{"ADMIN_TOKEN": "secret"}, `ADMIN_TOKEN: must have at least 32 bytes, got 6`},
		{map[string]string{"AUTH_FAILURES_PER_MINUTE": "0"}, `AUTH_FAILURES_PER_MINUTE: must be a positive integer`},
		{map[string]string{"API_TENANT_DB_CONNS": "0"}, `API_TENANT_DB_CONNS: must be a positive integer`},
		{map[string]string{"API_TENANT_DB_CONNS": "20000"}, `API_TENANT_DB_CONNS: at most 10000, got 20000`},
		{map[string]string{"CLIENT_IP_HEADER": "X Real IP"}, `CLIENT_IP_HEADER: not a header name`},
		{map[string]string{"MAIL_FROM": "billing"}, `MAIL_FROM: not an email address: "billing"`},
		{map[string]string{"MAIL_FROM": "Billing <billing@example.com"}, `MAIL_FROM: not an email address`},
		{map[string]string{"DATABASE_URL": "host=db password='unterminated"}, `DATABASE_URL: does not parse as a PostgreSQL connection string`},
		{map[string]string{"MIGRATIONS_DATABASE_URL": "postgres://owner@db:port/inv"}, `MIGRATIONS_DATABASE_URL: does not parse as a PostgreSQL connection string`},
		// A plan named twice: the first settings would be dropped without a word.
		{map[string]string{"PLAN_LIMITS": "pro=2:20:50000,free=1:10:10000,pro=1:1:1"}, `PLAN_LIMITS: plan pro named twice`},
	}
	for _, c := range cases {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range c.set {
			m[k] = v
		}
		_, err := FromEnv(env(m))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("FromEnv(%v) = %v, want an error containing %q", c.set, err, c.want)
		}
	}
	// The largest WORKER_CONCURRENCY allowed starts with the default pool,
	// whose headroom stops at the pool's own limit.
	c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "WORKER_CONCURRENCY": "10000"}))
	if err != nil || c.DBMaxConns != MaxDBConns || c.TenantDBMaxConns != MaxDBConns {
		t.Errorf("WORKER_CONCURRENCY=10000: %+v, %v; want DB_MAX_CONNS and TENANT_DB_MAX_CONNS %d", c, err, MaxDBConns)
	}
	// The largest integer does not wrap DB_MAX_CONNS's default around.
	_, err = FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "WORKER_CONCURRENCY": "9223372036854775807"}))
	if err == nil || strings.Contains(err.Error(), "-9") {
		t.Errorf("WORKER_CONCURRENCY=MaxInt64: %v, want no negative DB_MAX_CONNS", err)
	}
	// Too large a WORKER_CONCURRENCY is named alone, not also the pools'
	// sizes that follow it by default.
	_, err = FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "WORKER_CONCURRENCY": "10001"}))
	if err == nil || strings.Contains(err.Error(), "DB_MAX_CONNS") {
		t.Errorf("WORKER_CONCURRENCY=10001: %v, want only WORKER_CONCURRENCY named", err)
	}
	// Several bad variables are all reported at once.
	_, err = FromEnv(env(map[string]string{"WORKER_CONCURRENCY": "x", "LOG_LEVEL": "loud"}))
	if err == nil || !strings.Contains(err.Error(), "WORKER_CONCURRENCY") || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Errorf("err = %v, want both variables named", err)
	}
}

// TestAdminTokenMinimumLength: outside the dev stack an ADMIN_TOKEN needs
// 32 characters, and the error never shows the token; the dev stack (Dev)
// accepts a shorter one; no token at all disables the admin routes and is
// accepted.
func TestAdminTokenMinimumLength(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		token string
		dev   bool
		ok    bool
	}{
		{"", false, true},
		{"short-but-secret", false, false},
		{strings.Repeat("x", MinAdminTokenLen-1), false, false},
		{strings.Repeat("x", MinAdminTokenLen), false, true},
		{"short-but-secret", true, true},
	} {
		c, err := Parse(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "ADMIN_TOKEN": tc.token}))
		if err != nil {
			t.Fatal(err)
		}
		c.Dev = tc.dev
		_, err = c.Resolve()
		if (err == nil) != tc.ok {
			t.Errorf("ADMIN_TOKEN of %d characters, dev %v: %v; want ok=%v", len(tc.token), tc.dev, err, tc.ok)
		}
		if err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token) {
			t.Errorf("the error shows the token: %v", err)
		}
	}
}

// TestDashboardWritable: read-only unless asked for; the former
// DASHBOARD_READONLY still works when DASHBOARD_WRITABLE is unset.
func TestDashboardWritable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		writable, readonly string
		want               bool
	}{
		{"", "", false},
		{"true", "", true},
		{"false", "", false},
		{"", "false", true},
		{"", "true", false},
		{"true", "false", true},
	} {
		got, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv",
			"DASHBOARD_WRITABLE": c.writable, "DASHBOARD_READONLY": c.readonly}))
		if err != nil || got.DashboardWritable != c.want {
			t.Errorf("DASHBOARD_WRITABLE=%q DASHBOARD_READONLY=%q: writable %v, %v; want %v", c.writable, c.readonly, got.DashboardWritable, err, c.want)
		}
	}
}

// TestFlagOverridesBeforeDefaults: a value set between Parse and Resolve
// (a flag) is checked, and the defaults derived from it follow it.
func TestFlagOverridesBeforeDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse(env(map[string]string{"DATABASE_URL": "postgres://db/inv"}))
	if err != nil {
		t.Fatal(err)
	}
	c.WorkerConcurrency = 30 // -concurrency 30
	if c, err = c.Resolve(); err != nil || c.DBMaxConns != 30+DefaultDBPoolHeadroom {
		t.Fatalf("Resolve = %d conns, %v; want the default to follow the flag", c.DBMaxConns, err)
	}
	c, err = Parse(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "DB_MAX_CONNS": "10"}))
	if err != nil {
		t.Fatal(err)
	}
	c.WorkerConcurrency = 30
	if _, err := c.Resolve(); err == nil || !strings.Contains(err.Error(), "DB_MAX_CONNS: 10 is smaller than WORKER_CONCURRENCY 30") {
		t.Fatalf("Resolve with a set pool below the flag's concurrency = %v", err)
	}
	c.WorkerConcurrency = -1
	if _, err := c.Resolve(); err == nil || !strings.Contains(err.Error(), "WORKER_CONCURRENCY: must be a positive integer") {
		t.Fatalf("Resolve with a negative concurrency = %v", err)
	}
	if _, err := Parse(env(map[string]string{"WORKER_CONCURRENCY": "x"})); err == nil {
		t.Fatal("Parse accepted an unparseable variable")
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	NewLogger(Config{LogFormat: LogFormatJSON, LogLevel: slog.LevelWarn}, &buf).Info("hidden")
	NewLogger(Config{LogFormat: LogFormatJSON, LogLevel: slog.LevelWarn}, &buf).Warn("shown", "k", 1)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "shown" {
		t.Fatalf("json log %q (%v)", buf.String(), err)
	}
	buf.Reset()
	NewLogger(Config{LogFormat: LogFormatText}, &buf).Info("plain")
	if !strings.Contains(buf.String(), "level=INFO msg=plain") {
		t.Errorf("text log %q", buf.String())
	}
}

func TestNewProcessLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, closeLog := NewProcessLogger(Config{LogFormat: LogFormatJSON, LogLevel: slog.LevelInfo}, &buf)
	logger.Debug("hidden")
	logger.Info("one", "tenant_id", "acme")
	logger.Warn("two")
	// A warning is written before Warn returns, with the lines before it.
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("after Warn: %d lines, want 2: %q", n, buf.String())
	}
	logger.Info("three")
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		msgs = append(msgs, rec["msg"].(string))
	}
	if strings.Join(msgs, ",") != "one,two,three" {
		t.Fatalf("messages %q", msgs)
	}
}

func TestFairSettings(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://app@db/inv"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err := FromEnv(env(with("FAIR_DISPATCH", "false", "PLAN_LIMITS", "pro=3:6:900", "FAIR_PENDING_TIME", "50ms", "TASK_CHECK_INTERVAL", "5ms", "IDLE_RECHECK_INTERVAL", "300ms", "FAIR_MAX_WAITING_TOTAL", "250000")))
	if err != nil {
		t.Fatal(err)
	}
	if c.FairDispatch || c.Plans["pro"] != (fair.Policy{Weight: 3, MaxRunning: 6, MaxWaiting: 900}) || c.FairPendingTime != 50*time.Millisecond || c.TaskCheckInterval != 5*time.Millisecond || c.IdleRecheckInterval != 300*time.Millisecond || c.FairMaxWaitingTotal != 250_000 {
		t.Fatalf("fair settings: %+v", c)
	}
	for _, bad := range [][]string{
		{"PLAN_LIMITS", "pro=1:2"}, {"FAIR_PENDING_TIME", "-1s"}, {"FAIR_PENDING_TIME", "x"}, {"FAIR_PENDING_TIME", "1m"},
		{"TASK_CHECK_INTERVAL", "2m"}, {"IDLE_RECHECK_INTERVAL", "0.5us"}, {"IDLE_RECHECK_INTERVAL", "2m"}, {"FAIR_DISPATCH", "maybe"},
		{"FAIR_MAX_WAITING_TOTAL", "0"}, {"FAIR_MAX_WAITING_TOTAL", "-5"}, {"FAIR_MAX_WAITING_TOTAL", "many"},
	} {
		_, err := FromEnv(env(with(bad...)))
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%s=%s: error %v, want one naming the variable", bad[0], bad[1], err)
		}
	}
}

func TestTenantDatabases(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://app@db/inv",
		"TENANT_DATABASES": " eu-2=postgres://u:secret@db2/inv?sslmode=disable , us_1=postgres://db3/inv", "TENANT_DB_MAX_CONNS": "6"}
	c, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"eu-2": "postgres://u:secret@db2/inv?sslmode=disable", "us_1": "postgres://db3/inv"}
	if !reflect.DeepEqual(c.TenantDatabases, want) || c.TenantDBMaxConns != 6 {
		t.Errorf("TENANT_DATABASES = %v, TENANT_DB_MAX_CONNS = %d; want %v, 6", c.TenantDatabases, c.TenantDBMaxConns, want)
	}
	// A URL that does not parse is refused at start: the pools open lazily,
	// so it would otherwise fail every tenant placed there, long after.
	for _, bad := range []string{"main=postgres://x/y", "eu=", "Bad=postgres://x/y", "a=postgres://x/y,a=postgres://x/z", "noequals",
		"eu2=garbage", "eu2=postgres://u:secret@db2:notaport/inv", "eu2=postgres://u:secret@db2/inv?sslmode=sometimes"} {
		env["TENANT_DATABASES"] = bad
		_, err := FromEnv(func(k string) string { return env[k] })
		if err == nil || !strings.Contains(err.Error(), "TENANT_DATABASES") {
			t.Errorf("TENANT_DATABASES=%q: error %v, want one naming the variable", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %v echoes a URL", err)
		}
	}
}

func TestQueueShards(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://app@db/inv"}
	with := func(kv ...string) func(string) string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return env(m)
	}
	for _, tt := range []struct {
		env            []string
		shards, served int
	}{
		{nil, 1, 1},
		{[]string{"QUEUE_SHARDS", "3"}, 3, 3},
		{[]string{"QUEUE_SHARDS", "16"}, 16, 16},
		{[]string{"QUEUE_SHARDS", "1", "QUEUE_SHARDS_SERVED", "3"}, 1, 3},
		{[]string{"QUEUE_SHARDS", "3", "QUEUE_SHARDS_SERVED", "3"}, 3, 3},
	} {
		c, err := FromEnv(with(tt.env...))
		if err != nil || c.QueueShards != tt.shards || c.QueueShardsServed != tt.served {
			t.Errorf("%v: shards %d served %d, %v; want %d %d", tt.env, c.QueueShards, c.QueueShardsServed, err, tt.shards, tt.served)
		}
	}
	for _, bad := range [][]string{
		{"QUEUE_SHARDS", "0"}, {"QUEUE_SHARDS", "17"}, {"QUEUE_SHARDS", "-1"}, {"QUEUE_SHARDS", "x"},
		{"QUEUE_SHARDS_SERVED", "17"}, {"QUEUE_SHARDS_SERVED", "2", "QUEUE_SHARDS", "3"},
	} {
		_, err := FromEnv(with(bad...))
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: error %v, want one naming %s", bad, err, bad[0])
		}
	}
}

func TestWorkerQueueClasses(t *testing.T) {
	t.Parallel()
	if !slices.Equal(QueueClasses, tasks.Queues) {
		t.Fatalf("QueueClasses %v, tasks.Queues %v: they must agree", QueueClasses, tasks.Queues)
	}
	with := func(v string) func(string) string {
		return env(map[string]string{"DATABASE_URL": "postgres://app@db/inv", "WORKER_QUEUE_CLASSES": v})
	}
	for v, want := range map[string][]string{
		"":                      tasks.Queues,
		"default":               {"default"},
		" Default , low ":       {"default", "low"},
		"low,critical":          {"low", "critical"},
		"critical,default,low,": {"critical", "default", "low"},
	} {
		c, err := FromEnv(with(v))
		if err != nil || !slices.Equal(c.WorkerQueueClasses, want) {
			t.Errorf("WORKER_QUEUE_CLASSES=%q: %v, %v; want %v", v, c.WorkerQueueClasses, err, want)
		}
	}
	c, err := FromEnv(with(""))
	if err != nil {
		t.Fatal(err)
	}
	c.WorkerQueueClasses[0] = "changed"
	if QueueClasses[0] != "critical" {
		t.Error("the default list shares QueueClasses' array")
	}
	for _, bad := range []string{"pdf", "default,default", ",", "default,urgent", "critical low"} {
		_, err := FromEnv(with(bad))
		if err == nil || !strings.Contains(err.Error(), "WORKER_QUEUE_CLASSES") {
			t.Errorf("WORKER_QUEUE_CLASSES=%q: error %v, want one naming the variable", bad, err)
		}
	}
}

// TestMailFromAcceptsDisplayName: MAIL_FROM may carry a display name.
func TestMailFromAcceptsDisplayName(t *testing.T) {
	t.Parallel()
	for _, from := range []string{"billing@example.com", "ACME Billing <billing@example.com>"} {
		c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "MAIL_FROM": from}))
		if err != nil || c.MailFrom != from {
			t.Errorf("MAIL_FROM %q: %q, %v", from, c.MailFrom, err)
		}
	}
}

// TestTenantDBMaxTasks: TENANT_DB_MAX_TASKS defaults to all but a quarter
// of WORKER_CONCURRENCY (at least one slot left over from two on), is
// taken as set, and is refused above WORKER_CONCURRENCY.
func TestTenantDBMaxTasks(t *testing.T) {
	t.Parallel()
	for concurrency, want := range map[string]int{"1": 1, "2": 1, "4": 3, "10": 8, "100": 75} {
		c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "WORKER_CONCURRENCY": concurrency}))
		if err != nil || c.TenantDBMaxTasks != want {
			t.Errorf("WORKER_CONCURRENCY=%s: TENANT_DB_MAX_TASKS %d (%v), want %d", concurrency, c.TenantDBMaxTasks, err, want)
		}
	}
	c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "WORKER_CONCURRENCY": "4", "TENANT_DB_MAX_TASKS": "4"}))
	if err != nil || c.TenantDBMaxTasks != 4 {
		t.Errorf("TENANT_DB_MAX_TASKS=4: %d, %v", c.TenantDBMaxTasks, err)
	}
	if _, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db/inv", "WORKER_CONCURRENCY": "4", "TENANT_DB_MAX_TASKS": "5"})); err == nil || !strings.Contains(err.Error(), "TENANT_DB_MAX_TASKS") {
		t.Errorf("TENANT_DB_MAX_TASKS=5 over WORKER_CONCURRENCY=4: %v, want an error naming it", err)
	}
}

// TestSMTPTLS: SMTP_TLS defaults to opportunistic, takes required in any
// case, and any other value stops the start with an error naming the
// variable and the modes (a misspelt "required" must not leave reminders
// going out in clear text).
func TestSMTPTLS(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "opportunistic", "REQUIRED": "required", "opportunistic": "opportunistic"} {
		c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://app@db/inv", "SMTP_TLS": in}))
		if err != nil || c.SMTPTLS != want {
			t.Errorf("SMTP_TLS=%q: %q, %v; want %q", in, c.SMTPTLS, err, want)
		}
	}
	_, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://app@db/inv", "SMTP_TLS": "requried"}))
	if err == nil || !strings.Contains(err.Error(), "SMTP_TLS") || !strings.Contains(err.Error(), "opportunistic or required") {
		t.Errorf("SMTP_TLS=requried: %v, want an error naming the variable and the modes", err)
	}
}

// TestReminderSendHour: REMINDER_SEND_HOUR is an hour of the day, 0 to 23,
// 0 when unset (reminders with the first sweep of the tenant's day); an
// hour that is not an integer, or outside the day, stops the start with
// an error naming the variable, also when set on the Config (the dev
// stack) rather than read.
func TestReminderSendHour(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		value string
		want  int
	}{{"", 0}, {"0", 0}, {"9", 9}, {" 23 ", 23}} {
		c, err := FromEnv(envWithDatabase(map[string]string{"REMINDER_SEND_HOUR": tt.value}))
		if err != nil || c.ReminderSendHour != tt.want {
			t.Errorf("REMINDER_SEND_HOUR=%q: %d, %v; want %d", tt.value, c.ReminderSendHour, err, tt.want)
		}
	}
	for _, tt := range []struct{ value, want string }{
		{"24", "REMINDER_SEND_HOUR: must be an hour from 0 to 23, got 24"},
		{"-1", "REMINDER_SEND_HOUR: must be an hour from 0 to 23, got -1"},
		{"9am", `REMINDER_SEND_HOUR: must be an hour from 0 to 23, got "9am"`},
		{"09:00", `REMINDER_SEND_HOUR: must be an hour from 0 to 23, got "09:00"`},
		{"8.5", `REMINDER_SEND_HOUR: must be an hour from 0 to 23, got "8.5"`},
	} {
		_, err := FromEnv(envWithDatabase(map[string]string{"REMINDER_SEND_HOUR": tt.value}))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("REMINDER_SEND_HOUR=%q: error %v, want %q", tt.value, err, tt.want)
		}
	}
	_, err := Config{DatabaseURL: "postgres://app@db/inv", ReminderSendHour: 24}.Resolve()
	if err == nil || !strings.Contains(err.Error(), "REMINDER_SEND_HOUR: must be an hour from 0 to 23, got 24") {
		t.Errorf("Resolve with ReminderSendHour 24: %v, want REMINDER_SEND_HOUR named", err)
	}
}
