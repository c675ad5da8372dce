package fair

import (
	"context"
	"time"
)

// HeartbeatHealed is Dispatcher.Heartbeat, returning what the beat
// repaired (heal in scripts.go).
func HeartbeatHealed(d *Dispatcher, ctx context.Context, queue, workerID string, concurrency int, ttl time.Duration) (Healed, error) {
	return d.heartbeat(ctx, queue, workerID, concurrency, ttl, &holdings{})
}
