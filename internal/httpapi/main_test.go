package httpapi_test

import (
	"os"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	// Every test closes what it started: servers, pools, clients, the
	// cache's subscriber and the dashboard's connections.
	os.Exit(testenv.MainLeakCheck(m))
}
