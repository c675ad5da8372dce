package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// redisReply is an error reply of Redis, as go-redis returns it.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

func TestDependencyUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("enqueue: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("redis: %w", io.EOF), true},
		{fmt.Errorf("tenant lookup: %w", context.DeadlineExceeded), true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "25006"}, true}, // a hot standby: no writes for now
		{&pgconn.PgError{Code: "40001"}, true}, // serialization failure: rolled back, retry
		{&pgconn.PgError{Code: "40P01"}, true}, // deadlock: rolled back, retry
		{&pgconn.PgError{Code: "23505"}, false},
		{fmt.Errorf("fair: enqueue: %w", redisReply("LOADING Redis is loading the dataset in memory")), true},
		{redisReply("CLUSTERDOWN The cluster is down"), true},
		{redisReply("READONLY You can't write against a read only replica."), true},
		{redisReply("NOREPLICAS Not enough good replicas to write."), true},
		{fmt.Errorf("redis ping: %w", redisReply("ERR max number of clients reached")), true}, // maxclients: no new connections for now
		{redisReply("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), true},
		{redisReply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), true},
		{redisReply("ERR Error running script"), false},
		{errors.New("boom"), false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		if got := dependencyUnavailable(tt.err); got != tt.want {
			t.Errorf("dependencyUnavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
