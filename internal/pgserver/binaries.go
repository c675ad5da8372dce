package pgserver

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// debianBinGlob matches the directories of Debian's postgresql packages.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// ErrNotInstalled is returned by Start when initdb or postgres cannot be
// found. Its message is meant to be shown to a user as is.
var ErrNotInstalled = errors.New(`PostgreSQL server binaries not found (looked on PATH and in /usr/lib/postgresql/*/bin): install them with "apt-get install postgresql"`)

// binaries are the PostgreSQL programs Start runs.
type binaries struct {
	initdb   string
	postgres string
}

// findBinaries looks initdb and postgres up on PATH and in debianBinGlob.
func findBinaries() (binaries, error) {
	return lookupBinaries(filepath.SplitList(os.Getenv("PATH")), debianBinGlob)
}

// lookupBinaries finds initdb and postgres in one directory: the first of
// pathDirs holding both, else the directory matching glob with the highest
// major version (/usr/lib/postgresql/<major>/bin) holding both. Taking both
// from one directory keeps initdb and postgres of the same version.
func lookupBinaries(pathDirs []string, glob string) (binaries, error) {
	versioned, _ := filepath.Glob(glob)
	sort.SliceStable(versioned, func(i, j int) bool { return majorOf(versioned[i]) > majorOf(versioned[j]) })
	for _, dir := range append(append([]string{}, pathDirs...), versioned...) {
		if dir == "" {
			continue
		}
		initdb, postgres := filepath.Join(dir, "initdb"), filepath.Join(dir, "postgres")
		if isExecutable(initdb) && isExecutable(postgres) {
			return binaries{initdb: initdb, postgres: postgres}, nil
		}
	}
	return binaries{}, ErrNotInstalled
}

// majorOf extracts the major version from /usr/lib/postgresql/<major>/bin;
// 0 when it is not a number.
func majorOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// isExecutable reports whether path is a regular file with an execute bit.
func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
