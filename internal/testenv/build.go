package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

// builds caches BuildBinary results per package for the test binary's life.
var builds struct {
	mu      sync.Mutex
	byPkg   map[string]*buildResult
	dirOnce sync.Once
	dir     string
	dirErr  error
}

// buildResult is one package's build, done once.
type buildResult struct {
	once sync.Once
	path string
	err  error
}

// BuildBinary builds the Go main package pkg (an import path such as
// "github.com/invoicing/tenantworker/cmd/worker") with `go build` once per
// test binary, into a temporary directory that Main removes, and returns the
// executable's path. A failed build fails every test that asks, with the
// compiler output.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.byPkg == nil {
		builds.byPkg = make(map[string]*buildResult)
	}
	r, ok := builds.byPkg[pkg]
	if !ok {
		r = &buildResult{}
		builds.byPkg[pkg] = r
	}
	builds.mu.Unlock()

	r.once.Do(func() { r.path, r.err = build(pkg) })
	if r.err != nil {
		t.Fatalf("testenv: %v", r.err)
	}
	return r.path
}

// build runs go build for pkg into the shared build directory.
func build(pkg string) (string, error) {
	// Not under tempRoot: /dev/shm is often mounted noexec.
	builds.dirOnce.Do(func() { builds.dir, builds.dirErr = makeTempDir(os.TempDir(), "bin") })
	if builds.dirErr != nil {
		return "", builds.dirErr
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: find go command: %w", pkg, err)
	}
	// A subdirectory per package keeps equal base names (cmd/a/worker,
	// cmd/b/worker) apart.
	dir, err := os.MkdirTemp(builds.dir, "pkg-*")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	out := filepath.Join(dir, path.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}
