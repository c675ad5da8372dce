package devstack

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
)

// startRedis starts an in-process Redis (miniredis) on a free loopback
// port. ClockTTL makes TTLs expire by the wall clock, as in a real Redis:
// asynq's unique locks and the tenant cache rely on that.
func startRedis() (*miniredis.Miniredis, error) {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start in-process redis: %w", err)
	}
	return m, nil
}
