package pgserver

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeBin creates dir/name as an executable (or not) file.
func fakeBin(t *testing.T, dir, name string, exec bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mode := os.FileMode(0o644)
	if exec {
		mode = 0o755
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}

func TestLookupBinaries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	onPath := filepath.Join(root, "path")
	fakeBin(t, onPath, "initdb", true)
	fakeBin(t, onPath, "postgres", true)
	onlyInitdb := filepath.Join(root, "half")
	fakeBin(t, onlyInitdb, "initdb", true)
	notExec := filepath.Join(root, "noexec")
	fakeBin(t, notExec, "initdb", false)
	fakeBin(t, notExec, "postgres", false)
	for _, v := range []string{"9", "15", "17"} {
		dir := filepath.Join(root, "lib", v, "bin")
		fakeBin(t, dir, "initdb", true)
		fakeBin(t, dir, "postgres", true)
	}
	glob := filepath.Join(root, "lib", "*", "bin")
	none := filepath.Join(root, "nothing", "*", "bin")

	tests := []struct {
		name    string
		path    []string
		glob    string
		wantDir string // "" means ErrNotInstalled
	}{
		{name: "nothing anywhere", path: nil, glob: none},
		{name: "half and non-executable on PATH", path: []string{onlyInitdb, notExec, ""}, glob: none},
		{name: "PATH wins", path: []string{onlyInitdb, onPath}, glob: glob, wantDir: onPath},
		{name: "newest major, numerically", path: []string{onlyInitdb}, glob: glob, wantDir: filepath.Join(root, "lib", "17", "bin")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := lookupBinaries(tt.path, tt.glob)
			if tt.wantDir == "" {
				if !errors.Is(err, ErrNotInstalled) {
					t.Fatalf("lookupBinaries = %+v, %v; want ErrNotInstalled", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("lookupBinaries: %v", err)
			}
			want := binaries{initdb: filepath.Join(tt.wantDir, "initdb"), postgres: filepath.Join(tt.wantDir, "postgres")}
			if got != want {
				t.Fatalf("lookupBinaries = %+v, want %+v", got, want)
			}
		})
	}
}

func TestNotInstalledMessageNamesThePackage(t *testing.T) {
	t.Parallel()
	const want = `PostgreSQL server binaries not found (looked on PATH and in /usr/lib/postgresql/*/bin): install them with "apt-get install postgresql"`
	if ErrNotInstalled.Error() != want {
		t.Fatalf("ErrNotInstalled = %q, want %q", ErrNotInstalled, want)
	}
}
