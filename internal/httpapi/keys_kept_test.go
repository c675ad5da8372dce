package httpapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// An issuance the admin deadline cut off says that no key was issued,
// since IssueKey withdraws the key it could not confirm; only when that
// withdrawal failed too does it tell the operator to look for a key.
func TestIssueKeptSaysWhetherAKeyMayBeLeft(t *testing.T) {
	withdrawn := fmt.Errorf("issue api key for tenant t: %w (no key was issued: key 7 withdrawn)", context.DeadlineExceeded)
	if got := issueKept(withdrawn); !strings.HasPrefix(got, "no key was issued") {
		t.Errorf("withdrawn key: %q, want it to say no key was issued", got)
	}
	left := fmt.Errorf("issue api key for tenant t: %w (the key tk_abc... may be stored and %w: revoke it)", context.DeadlineExceeded, tenancy.ErrKeyLeftIssued)
	if got := issueKept(left); !strings.Contains(got, "a key may have been issued") || !strings.Contains(got, "revoke") {
		t.Errorf("key left issued: %q, want it to say a key may have been issued and to revoke it", got)
	}
	pending := fmt.Errorf("issue api key for tenant t: %w (the key tk_abc... it sent is being withdrawn: %w: %w)", context.DeadlineExceeded, tenancy.ErrKeyBeingWithdrawn, context.DeadlineExceeded)
	if got := issueKept(pending); strings.HasPrefix(got, "no key was issued") || !strings.Contains(got, "being withdrawn") {
		t.Errorf("key still being withdrawn: %q, want it to say the key is being withdrawn, not that none was issued", got)
	}
}
