package devstack

import (
	"os"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	// Every test stops what it started: Redis clients, caches, pools.
	os.Exit(testenv.MainLeakCheck(m))
}
