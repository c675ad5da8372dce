package pgserver

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Every test stops its servers, so no goroutine waiting on a postgres
	// process may remain.
	goleak.VerifyTestMain(m)
}
