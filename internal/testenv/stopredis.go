package testenv

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// StopRedis stops the redis-server behind rdb (SIGSTOP: it keeps its
// connections and answers nothing, as a server stalled by a long command
// or a paused VM does) until the returned function, also run at the end of
// the test, resumes it (SIGCONT). The server must run on this machine: its
// pid comes from INFO.
func StopRedis(t testing.TB, rdb redis.UniversalClient) (resume func()) {
	t.Helper()
	info, err := rdb.Info(t.Context(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 0 {
		t.Fatalf("no process_id in INFO server:\n%s", info)
	}
	var resumed atomic.Bool
	resume = func() {
		if resumed.CompareAndSwap(false, true) {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resume redis-server %d: %v", pid, err)
			}
		}
	}
	t.Cleanup(resume)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop redis-server %d: %v", pid, err)
	}
	return resume
}

// Pinged sends a PING to the Redis server at addr on a connection of its
// own and returns a channel closed once the server has answered it: with
// StopRedis, a test learns whether the server was still stopped when
// something else answered.
func Pinged(t testing.TB, addr string) <-chan struct{} {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = bufio.NewReader(conn).ReadString('\n')
	}()
	return done
}
