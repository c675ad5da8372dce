package config

import (
	"os"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestMain(m *testing.M) {
	// The Redis tests start servers through testenv: Main stops whatever a
	// failed test left running and removes its directories, and every
	// test closes the clients it made.
	os.Exit(testenv.MainLeakCheck(m))
}
