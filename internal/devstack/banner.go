package devstack

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/invoicing/tenantworker/internal/placement"
)

// ReadyPrefix starts the machine-readable line of the banner; the rest of
// the line is Info as JSON.
const ReadyPrefix = "DEV_READY "

// Info describes a running dev stack. It is printed as JSON after
// ReadyPrefix and handed to Options.Ready.
type Info struct {
	// API is the first demo tenant's API base, e.g. http://acme.localhost:8080.
	API string `json:"api"`
	// HTTPAddr is the enqueue service's listening address (host:port).
	HTTPAddr string `json:"http_addr"`
	// Dashboard is the asynq dashboard's URL (basic auth, any user, the
	// admin token as password).
	Dashboard string `json:"dashboard"`
	// AdminToken guards the admin routes.
	AdminToken string `json:"admin_token"`
	// WorkerAddr serves the worker's /healthz, /readyz and /metrics.
	WorkerAddr string `json:"worker_addr"`
	// RedisAddr is the in-process Redis.
	RedisAddr string `json:"redis_addr"`
	// DatabaseURL is the database the stack runs on.
	DatabaseURL string `json:"database_url"`
	// DataDir holds documents/ and outbox/ (and, usually, PGDir).
	DataDir      string `json:"data_dir"`
	DocumentsDir string `json:"documents_dir"`
	OutboxDir    string `json:"outbox_dir"`
	// PGDir is the throwaway PostgreSQL's directory, removed on exit; ""
	// with DATABASE_URL.
	PGDir string `json:"pg_dir"`
	// Tenants are the demo tenants by slug.
	Tenants map[string]TenantInfo `json:"tenants"`
}

// TenantInfo is one demo tenant.
type TenantInfo struct {
	ID     string `json:"id"`
	API    string `json:"api"`
	APIKey string `json:"api_key"`
	// Reused is true when the tenant existed before this run.
	Reused bool `json:"reused"`
	// Invoice is the invoice the banner's commands use.
	Invoice sampleInvoice `json:"invoice"`
}

// tenantAPI returns http://<slug><suffix>:<port> for a listening address.
func tenantAPI(slug, suffix string, addr net.Addr) string {
	return "http://" + slug + suffix + ":" + portOf(addr)
}

// portOf returns the port of a TCP address.
func portOf(addr net.Addr) string {
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "0"
	}
	return port
}

// writeBanner prints what a developer needs to try the stack, and the
// machine-readable DEV_READY line, to w in one write.
func writeBanner(w io.Writer, info Info, order []string) error {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("")
	if info.PGDir != "" {
		line("tenantworker dev stack is ready (Ctrl-C stops it and removes the throwaway database)")
	} else {
		line("tenantworker dev stack is ready (Ctrl-C stops it; the database at DATABASE_URL is kept)")
	}
	line("")
	line("  API (tenant acme):  %s", info.API)
	line("  dashboard:          %s  (basic auth: any user, the admin token as password)", info.Dashboard)
	line("  admin token:        %s", info.AdminToken)
	for _, slug := range order {
		t := info.Tenants[slug]
		line("  %-19s %s  (%s)", slug+" API key:", t.APIKey, t.API)
	}
	line("  worker health:      http://%s/healthz", info.WorkerAddr)
	line("  data directory:     %s  (PDFs in documents/, reminder e-mails in outbox/)", info.DataDir)
	if info.PGDir != "" {
		line("  throwaway database: %s", info.DatabaseURL)
	} else {
		line("  database:           DATABASE_URL (kept)")
	}
	if len(order) > 0 {
		t := info.Tenants[order[0]]
		id := t.Invoice.ID
		line("")
		line("Try it (invoice %s of %s):", t.Invoice.Number, order[0])
		line("")
		line("  export KEY=%s", t.APIKey)
		line("  # 1. render the PDF; the answer names the task")
		line(`  curl -X POST -H "Authorization: Bearer $KEY" %s/v1/invoices/%d/pdf`, t.API, id)
		line("  # 2. poll the task until \"state\" is \"completed\"")
		line(`  curl -H "Authorization: Bearer $KEY" %s/v1/tasks/TASK_ID`, t.API)
		line("  # 3. download the PDF")
		line(`  curl -H "Authorization: Bearer $KEY" %s/v1/invoices/%d/pdf -o invoice.pdf`, t.API, id)
	}
	line("")
	if info.PGDir == "" {
		// DATABASE_URL is the developer's own database, whose URL may hold
		// a password: this line goes to stdout, terminals and CI logs.
		info.DatabaseURL = placement.Redact(info.DatabaseURL)
	}
	j, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("banner: %w", err)
	}
	line("%s%s", ReadyPrefix, j)
	_, err = io.WriteString(w, b.String())
	return err
}
