package devstack

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

func TestBanner(t *testing.T) {
	t.Parallel()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	info := Info{
		API:        tenantAPI("acme", ".localhost", addr),
		HTTPAddr:   addr.String(),
		Dashboard:  "http://localhost:8080/admin/dashboard/",
		AdminToken: "tok123",
		WorkerAddr: "127.0.0.1:9999",
		DataDir:    "/tmp/devdata",
		PGDir:      "/tmp/devdata/pgserver-1-2",
		Tenants: map[string]TenantInfo{
			"acme":   {ID: "t1", API: tenantAPI("acme", ".localhost", addr), APIKey: "key-acme", Invoice: sampleInvoice{ID: 1, Number: "ACME-2026-0001"}},
			"globex": {ID: "t2", API: tenantAPI("globex", ".localhost", addr), APIKey: "key-globex", Invoice: sampleInvoice{ID: 1, Number: "GLX-2026-0001"}},
		},
	}
	var buf bytes.Buffer
	if err := writeBanner(&buf, info, []string{"acme", "globex"}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"http://acme.localhost:8080",
		"http://localhost:8080/admin/dashboard/",
		"tok123",
		"key-acme",
		"key-globex",
		"export KEY=key-acme",
		`curl -X POST -H "Authorization: Bearer $KEY" http://acme.localhost:8080/v1/invoices/1/pdf`,
		`curl -H "Authorization: Bearer $KEY" http://acme.localhost:8080/v1/tasks/TASK_ID`,
		`curl -H "Authorization: Bearer $KEY" http://acme.localhost:8080/v1/invoices/1/pdf -o invoice.pdf`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}

	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	last := lines[len(lines)-1]
	if strings.Count(out, ReadyPrefix) != 1 || !strings.HasPrefix(last, ReadyPrefix) {
		t.Fatalf("want exactly one %q line, the last one:\n%s", ReadyPrefix, out)
	}
	var back Info
	if err := json.Unmarshal([]byte(strings.TrimPrefix(last, ReadyPrefix)), &back); err != nil {
		t.Fatalf("DEV_READY JSON: %v", err)
	}
	if back.API != info.API || back.AdminToken != "tok123" || back.PGDir != info.PGDir || back.Tenants["globex"].APIKey != "key-globex" || back.Tenants["acme"].Invoice.Number != "ACME-2026-0001" {
		t.Fatalf("DEV_READY round trip: %+v", back)
	}
}

// TestBannerWithDatabaseURL: on the database at DATABASE_URL, which the
// stack keeps, the banner does not promise to remove a database.
func TestBannerWithDatabaseURL(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := writeBanner(&buf, Info{DatabaseURL: "postgres://app@db/inv"}, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "removes the throwaway database") || !strings.Contains(out, "DATABASE_URL (kept)") {
		t.Fatalf("banner for DATABASE_URL:\n%s", out)
	}
}
