package tenantctx_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
)

func TestNewValidatesNameAndPlan(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, plan string }{
		{"Acme\x00Ltd", "free"},
		{"Acme\nLtd", "free"},
		{"Acme \u0085", "free"},
		{strings.Repeat("n", tenantctx.MaxNameLen+1), "free"},
		{"bad \xff utf8", "free"},
		{"Acme", "pro\tplus"},
		{"Acme", strings.Repeat("p", tenantctx.MaxPlanLen+1)},
	} {
		if _, err := tenantctx.New("acme", c.name, c.plan); !errors.Is(err, tenantctx.ErrInvalidText) {
			t.Errorf("New(acme, %.20q, %.20q): %v, want tenantctx.ErrInvalidText", c.name, c.plan, err)
		}
	}
	for _, name := range []string{"Zoë Müller GmbH", "Łódź Sp. z o.o.", strings.Repeat("n", tenantctx.MaxNameLen), ""} {
		if _, err := tenantctx.New("acme", name, "enterprise"); err != nil {
			t.Errorf("New(acme, %.20q): %v", name, err)
		}
	}
}
