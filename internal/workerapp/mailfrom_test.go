package workerapp

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/config"
)

// TestRunRefusesASenderTheEnvelopeCannotCarry: a MAIL_FROM whose local
// part needs quoting parses as an address, but go-mail puts it unquoted
// into MAIL FROM, where a strict server refuses every reminder, each
// retried ten times. The worker refuses it at start, before it connects
// to anything (nothing listens at the URLs given here).
func TestRunRefusesASenderTheEnvelopeCannotCarry(t *testing.T) {
	t.Parallel()
	cfg, err := config.FromEnv(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1",
			"MAIL_FROM": `Billing <"billing dept"@example.com>`}[k]
	})
	if err != nil {
		t.Fatalf("config refused the address already: %v", err)
	}
	err = Run(context.Background(), cfg, config.NewLogger(cfg, io.Discard))
	if err == nil || !strings.Contains(err.Error(), "MAIL_FROM") || !strings.Contains(err.Error(), "needs quoting") {
		t.Fatalf("Run = %v, want MAIL_FROM refused at start", err)
	}
}
