// Package scripts has no Go code. Its tests keep the README's two commands,
// scripts/test.sh and .ci/run together: a newcomer runs what the top of the
// README shows, so CI must run exactly that, and the test command must set
// itself up. They run with every other test, from ./scripts/test.sh.
package scripts

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeCommands are the commands of the README's first code block, exactly
// as a newcomer types them. The last is the test command, which .ci/run
// calls.
var readmeCommands = []string{
	"go run ./cmd/worker -dev",
	"./scripts/test.sh",
}

// testCommand is the README's test command.
var testCommand = readmeCommands[len(readmeCommands)-1]

// trailingComment matches a shell comment after a command.
var trailingComment = regexp.MustCompile(`(^|\s)#.*$`)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// firstCodeBlock returns the lines of the README's first fenced code block,
// which must come before the first section heading.
func firstCodeBlock(lines []string) ([]string, error) {
	for i, line := range lines {
		if strings.HasPrefix(line, "## ") {
			return nil, errors.New("no code block before the first section heading")
		}
		if !strings.HasPrefix(line, "```") {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if strings.HasPrefix(lines[j], "```") {
				return lines[i+1 : j], nil
			}
		}
		return nil, errors.New("the first code block is not closed")
	}
	return nil, errors.New("no code block")
}

func TestReadmeCommands(t *testing.T) {
	block, err := firstCodeBlock(readLines(t, "../README.md"))
	if err != nil {
		t.Fatalf("README.md: %v; it should open with these commands:\n%s", err, strings.Join(readmeCommands, "\n"))
	}
	var got []string
	for _, line := range block {
		if cmd := strings.TrimSpace(trailingComment.ReplaceAllString(line, "")); cmd != "" {
			got = append(got, cmd)
		}
	}
	if !slices.Equal(got, readmeCommands) {
		t.Errorf("README.md's first code block runs\n\t%s\nwant (comments aside)\n\t%s\nIf the commands changed on purpose, change readmeCommands and .ci/run with them.",
			strings.Join(got, "\n\t"), strings.Join(readmeCommands, "\n\t"))
	}
}

func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	// .ci/run may only enter the repository and call the README's test
	// command; installing packages or running tests belongs in that
	// command, so that a newcomer gets what CI gets.
	allowed := []string{"set -euo pipefail", `cd "$(dirname "$0")/.."`}
	calls := 0
	for i, line := range readLines(t, "../.ci/run") {
		line = strings.TrimSpace(trailingComment.ReplaceAllString(line, ""))
		switch {
		case line == "" || slices.Contains(allowed, line):
		case line == testCommand || line == "exec "+testCommand:
			calls++
		default:
			t.Errorf(".ci/run:%d: %q: .ci/run should only call the README's test command %s; set-up belongs in that script", i+1, line, testCommand)
		}
	}
	if calls != 1 {
		t.Errorf(".ci/run calls the README's test command %s %d times, want once", testCommand, calls)
	}
}

func TestScriptsAreExecutable(t *testing.T) {
	for _, path := range []string{"../.ci/run", "test.sh"} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable (mode %v): git update-index --chmod=+x", path, st.Mode())
		}
	}
}

// TestSetupDryRun runs test.sh's set-up with TEST_SH_PROBE_PATH (where to
// look for the commands the tests need, and the python3 that must import
// the Python modules) and TEST_SH_DRY_RUN (install nothing, run nothing).
// Adding a command to the script's NEEDS, or a module to its PY_MODULES,
// means adding its package here. A fake python3 that exits 0 imports
// every module; one that exits 1 none. A fake gcc that exits 0 builds the
// script's C program; one that exits 1 fails to link it, as gcc does
// without libc6-dev (no crt1.o, no libc headers).
func TestSetupDryRun(t *testing.T) {
	t.Parallel()
	commands := []string{"redis-server", "pdftotext", "pgbouncer", "initdb", "postgres", "gcc"}
	allButRedisCLI := append(slices.Clone(commands), "python3")
	const pythonPackages = "python3-celery python3-reportlab python3-psycopg2 python3-redis"
	// Everything but a C compiler: `go test -race` needs cgo, which the go
	// command turns off when it finds none ("-race requires cgo").
	allButGCC := slices.DeleteFunc(append(slices.Clone(allButRedisCLI), "redis-cli"), func(c string) bool { return c == "gcc" })
	tests := []struct {
		name     string
		commands []string // fake executables in the probe directory; nil: probe nowhere
		noImport bool     // the fake python3 fails every import
		noLink   bool     // the fake gcc fails to build a program
		install  string   // the packages it installs; "": nothing
	}{
		{"nothing installed", nil, false, false, "redis-server redis-tools poppler-utils pgbouncer postgresql build-essential " + pythonPackages},
		{"no redis-cli", allButRedisCLI, false, false, "redis-tools"},
		{"no C compiler", allButGCC, false, false, "build-essential"},
		// gcc without libc6-dev: go test -race finds gcc, so cgo is on,
		// then fails building runtime/cgo (stdlib.h, crt1.o missing).
		{"C compiler without the C library", append(slices.Clone(allButRedisCLI), "redis-cli"), false, true, "build-essential"},
		{"no python3", append(slices.Clone(commands), "redis-cli"), false, false, pythonPackages},
		{"python3 without the modules", append(slices.Clone(allButRedisCLI), "redis-cli"), true, false, pythonPackages},
		{"everything installed", append(slices.Clone(allButRedisCLI), "redis-cli"), false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			probe := ""
			if tt.commands != nil {
				probe = t.TempDir()
				for _, name := range tt.commands {
					script := "#!/bin/sh\n"
					if name == "python3" && tt.noImport {
						script += "exit 1\n"
					}
					if name == "gcc" && tt.noLink {
						script += "echo '/usr/bin/ld: cannot find crt1.o: No such file or directory' >&2\nexit 1\n"
					}
					if err := os.WriteFile(filepath.Join(probe, name), []byte(script), 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "./test.sh")
			cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "TEST_SH_") }),
				"TEST_SH_PROBE_PATH="+probe, "TEST_SH_DRY_RUN=1")
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("./test.sh: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]

			if tt.install == "" {
				if err != nil || last != "test.sh: dry run: nothing to install" {
					t.Fatalf("./test.sh with every command present: %v, last line %q, want success and \"test.sh: dry run: nothing to install\"\n%s", err, last, out)
				}
				return
			}
			// As root or with passwordless sudo, the dry run shows what it
			// would install; otherwise the script stops with the line to run.
			apt := "apt-get install -y --no-install-recommends " + tt.install
			switch {
			case err == nil && strings.HasPrefix(last, "test.sh: dry run: would install ") && strings.HasSuffix(last, apt):
			case exit != nil && exit.ExitCode() == 1 && last == "sudo "+apt:
			default:
				t.Fatalf("./test.sh: %v, last line %q; want it to end in %q (success) or to be %q (exit status 1)\n%s", err, last, apt, "sudo "+apt, out)
			}
		})
	}
}

// TestRoomCheckDryRun runs test.sh's room check with TEST_SH_FREE_KB (how
// much Go's build cache, work directory and module cache count as having
// free) and TEST_SH_SPARE_DIR (where /dev/shm would be used): with room it
// says nothing; short of room it moves them to the spare directory when
// that has the room and runs programs, and otherwise warns that the run
// may fail. A dry run leaves nothing in the spare directory.
func TestRoomCheckDryRun(t *testing.T) {
	t.Parallel()
	probe := t.TempDir()
	for _, name := range []string{"redis-server", "redis-cli", "pdftotext", "pgbouncer", "initdb", "postgres", "gcc", "python3"} {
		if err := os.WriteFile(filepath.Join(probe, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const needKB = 4 << 20 // test.sh's NEED_KB
	spare := t.TempDir()
	var st syscall.Statfs_t
	if err := syscall.Statfs(spare, &st); err != nil {
		t.Fatal(err)
	}
	spareHasRoom := st.Bavail*uint64(st.Bsize)/1024 >= needKB
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name, freeKB, spare string
		want                string // a line of the output containing it; "": no line about room
	}{
		{"room enough", "1099511627776", spare, ""},
		{"short of room, no spare directory", "1000", missing, "and no room in " + missing + " to use instead"},
		{"short of room, a spare directory", "1000", spare, map[bool]string{
			true:  "in a directory under " + spare + " (",
			false: "and no room in " + spare + " to use instead",
		}[spareHasRoom]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "./test.sh")
			cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "TEST_SH_") }),
				"TEST_SH_PROBE_PATH="+probe, "TEST_SH_DRY_RUN=1", "TEST_SH_FREE_KB="+tt.freeKB, "TEST_SH_SPARE_DIR="+tt.spare)
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("./test.sh: %v\n%s", err, out)
			}
			var room []string
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "test.sh: less than 4.0 GiB free for GOCACHE (") {
					room = append(room, line)
				}
			}
			switch {
			case tt.want == "" && len(room) != 0:
				t.Errorf("with room enough, test.sh says %q; want nothing about room", room)
			case tt.want != "" && (len(room) != 1 || !strings.Contains(room[0], tt.want)):
				t.Errorf("short of room, test.sh says %q; want one line containing %q\n%s", room, tt.want, out)
			}
			if !strings.HasSuffix(strings.TrimSpace(string(out)), "test.sh: dry run: nothing to install") {
				t.Errorf("the dry run did not go on to the commands' check:\n%s", out)
			}
			if entries, err := os.ReadDir(spare); err != nil || len(entries) != 0 {
				t.Errorf("the spare directory after a dry run: %v, %v; want it empty", entries, err)
			}
		})
	}
}
