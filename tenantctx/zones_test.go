package tenantctx

import (
	"archive/zip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestZoneNamesAreTheEmbeddedDatabases: the names ValidateTimeZone accepts
// (embeddedZones, generated) are sorted, each loads, and each is in the
// zone database of the Go toolchain building this (lib/time/zoneinfo.zip,
// the data time/tzdata embeds). After a Go upgrade that adds zones:
// go generate ./tenantctx.
func TestZoneNamesAreTheEmbeddedDatabases(t *testing.T) {
	t.Parallel()
	if !slices.IsSorted(embeddedZones) {
		t.Fatal("embeddedZones is not sorted: go generate ./tenantctx")
	}
	for _, name := range embeddedZones {
		if _, err := LoadTimeZone(name); err != nil {
			t.Errorf("LoadTimeZone(%q) = %v", name, err)
		}
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	zr, err := zip.OpenReader(filepath.Join(strings.TrimSpace(string(out)), "lib", "time", "zoneinfo.zip"))
	if err != nil {
		t.Fatalf("the toolchain's zone database, to compare embeddedZones with: %v", err)
	}
	defer func() { _ = zr.Close() }()
	var names []string
	for _, f := range zr.File {
		if !strings.HasSuffix(f.Name, "/") {
			names = append(names, f.Name)
		}
	}
	slices.Sort(names)
	// A name the toolchain's database lacks would be accepted and then be
	// unknown to a worker without the host's zoneinfo: an error. A name it
	// has that the list lacks (a zone added by a newer Go) is only refused
	// until the list is generated again: said, not failed, so that a Go
	// upgrade does not fail the build.
	for _, name := range embeddedZones {
		if _, found := slices.BinarySearch(names, name); !found {
			t.Errorf("embeddedZones has %q, which the toolchain's zone database lacks: go generate ./tenantctx", name)
		}
	}
	for _, name := range names {
		if _, found := slices.BinarySearch(embeddedZones, name); !found {
			t.Logf("the toolchain's zone database has %q, which embeddedZones lacks (refused until go generate ./tenantctx)", name)
		}
	}
}
