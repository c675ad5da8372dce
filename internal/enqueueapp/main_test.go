package enqueueapp_test

import (
	"os"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.MainLeakCheck(m))
}
