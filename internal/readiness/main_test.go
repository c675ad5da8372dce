package readiness_test

import (
	"os"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	// The Redis tests start their servers and close their clients.
	os.Exit(testenv.MainLeakCheck(m))
}
