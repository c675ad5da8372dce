package devstack

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.Main(m)
	if code == 0 {
		// Every test stops what it started: Redis clients, caches, pools.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
