package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// shutdowner is a server that Main stops when the test binary is done.
type shutdowner interface {
	shutdown() error
}

// registry holds everything this test binary started, for Main to clean up.
var registry struct {
	mu      sync.Mutex
	servers map[shutdowner]struct{}
	dirs    []string
}

func registerServer(s shutdowner) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.servers == nil {
		registry.servers = make(map[shutdowner]struct{})
	}
	registry.servers[s] = struct{}{}
}

func unregisterServer(s shutdowner) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	delete(registry.servers, s)
}

func registerDir(dir string) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	registry.dirs = append(registry.dirs, dir)
}

// Main wraps TestMain: os.Exit(testenv.Main(m)). It runs m.Run() and then
// stops every server this test binary started (SIGINT for PostgreSQL's fast
// shutdown, SIGTERM for Redis, SIGKILL to the process group after 5s) and
// removes their temporary directories. It returns m.Run's exit code.
func Main(m *testing.M) int {
	code := m.Run()
	shutdownAll()
	return code
}

// MainLeakCheck is Main for packages that also check for leaked goroutines:
// os.Exit(testenv.MainLeakCheck(m)). When the tests passed and every server
// has been stopped, it runs goleak.Find with opts; a leak is printed on
// stderr and makes the result 1.
func MainLeakCheck(m *testing.M, opts ...goleak.Option) int {
	code := Main(m)
	if code != 0 {
		return code
	}
	// go-redis retries a failed dial from a goroutine that sleeps a second
	// between attempts and sees its pool closed only when it wakes: after a
	// test stopped a Redis under a client, that goroutine ends up to a
	// second after the client's Close, later on a loaded machine. goleak
	// waits about a second by default; give such goroutines half a minute,
	// since a slow shared machine under -race can hold them back for
	// seconds (a real leak stays and is reported all the same, only later).
	err := goleak.Find(opts...)
	for deadline := time.Now().Add(30 * time.Second); err != nil && time.Now().Before(deadline); {
		err = goleak.Find(opts...)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
		return 1
	}
	return 0
}

// shutdownAll stops every registered server and removes every registered
// directory. Failures are reported on stderr; they do not change the result.
func shutdownAll() {
	registry.mu.Lock()
	servers := registry.servers
	dirs := registry.dirs
	registry.servers = nil
	registry.dirs = nil
	registry.mu.Unlock()

	var wg sync.WaitGroup
	for s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.shutdown(); err != nil {
				fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			}
		}()
	}
	wg.Wait()
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: remove %s: %v\n", dir, err)
		}
	}
}
