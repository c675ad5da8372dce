package readiness

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestRedisCheckPassesOnAServerRefusingTheProbeAsLua: a server that reads
// the write probe's shebang as Lua and refuses it with ERR (Redis before
// 7.0, miniredis: the dev command's Redis) takes commands: the check
// passes. redis.HasErrorPrefix drops a leading "ERR " before it compares,
// so the check took such a reply for a refused write, and the dev
// command's /readyz answered 503 naming redis.
func TestRedisCheckPassesOnAServerRefusingTheProbeAsLua(t *testing.T) {
	m := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rc.Close()
	if err := rc.Eval(context.Background(), writeProbe, nil).Err(); err == nil {
		t.Fatal("miniredis ran the write probe; want it refused as Lua, as this test assumes")
	}
	if err := redisServes(context.Background(), rc); err != nil {
		t.Errorf("check of a server refusing the probe as Lua = %v, want nil", err)
	}
}
