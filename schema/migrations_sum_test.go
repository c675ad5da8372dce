package schema

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// sumFile pins the sha256 of every embedded migration file.
const sumFile = "migrations.sum"

// TestMigrationsSumPinned: every embedded migration file has the checksum
// migrations.sum pins for it, and every pinned file is still there. It is
// the developer's guard against editing or renumbering a released
// migration (a schema that applied it would never apply the new one);
// Migrate's own guard is ErrMigrationMismatch, at run time.
func TestMigrationsSumPinned(t *testing.T) {
	t.Parallel()
	sum, err := os.ReadFile(sumFile)
	if err != nil {
		t.Fatalf("read %s: %v", sumFile, err)
	}
	for _, p := range checkMigrationsSum(migrationFiles, string(sum)) {
		t.Error(p)
	}
}

// TestMigrationsSumCheckNamesEachProblem: the check reports an edited file,
// a renamed one (its old line pins a file that is gone, its new name has
// no line) and a new file without a line, each saying what to do.
func TestMigrationsSumCheckNamesEachProblem(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"migrations/0001_init.sql":    {Data: []byte("CREATE TABLE a (id int);\n")},
		"migrations/0002_edited.sql":  {Data: []byte("CREATE TABLE b (id bigint);\n")},
		"migrations/0003_renamed.sql": {Data: []byte("CREATE TABLE c (id int);\n")},
		"migrations/0004_new.sql":     {Data: []byte("CREATE TABLE d (id int);\n")},
	}
	sum := "# comment\n\n" +
		"0001_init.sql " + sha256Hex("CREATE TABLE a (id int);\n") + "\n" +
		"0002_edited.sql " + sha256Hex("CREATE TABLE b (id int);\n") + "\n" +
		"0003_old_name.sql " + sha256Hex("CREATE TABLE c (id int);\n") + "\n"
	got := checkMigrationsSum(fsys, sum)
	want := []string{
		"migrations/0002_edited.sql changed since it was released (sha256 " + sha256Hex("CREATE TABLE b (id bigint);\n") +
			", migrations.sum pins " + sha256Hex("CREATE TABLE b (id int);\n") + "): a released migration must never be edited; restore it and make the change in a new migration",
		"migrations/0003_renamed.sql has no line in migrations.sum: if it is a new migration, add the line \"0003_renamed.sql " +
			sha256Hex("CREATE TABLE c (id int);\n") + "\" (sha256sum migrations/0003_renamed.sql); a released migration must never be renamed or renumbered",
		"migrations/0004_new.sql has no line in migrations.sum: if it is a new migration, add the line \"0004_new.sql " +
			sha256Hex("CREATE TABLE d (id int);\n") + "\" (sha256sum migrations/0004_new.sql); a released migration must never be renamed or renumbered",
		"migrations.sum pins 0003_old_name.sql, which is gone: a released migration must never be renamed, renumbered or removed; restore it under its released name",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := checkMigrationsSum(fsys, "0001_init.sql nothex\n"); len(p) == 0 || !strings.Contains(p[0], "want \"NNNN_name.sql <sha256 hex>\"") {
		t.Errorf("a malformed line: %q", p)
	}
}

// checkMigrationsSum compares the migrations/*.sql files of fsys with sum,
// the text of migrations.sum (lines "NNNN_name.sql <sha256 hex>"; blank
// lines and lines starting with # are ignored), and describes each
// difference.
func checkMigrationsSum(fsys fs.FS, sum string) []string {
	var problems []string
	pinned := map[string]string{}
	var order []string
	sc := bufio.NewScanner(strings.NewReader(sum))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || len(f[1]) != 64 || !isHex(f[1]) {
			problems = append(problems, fmt.Sprintf("%s line %d: %q: want \"NNNN_name.sql <sha256 hex>\"", sumFile, n, line))
			continue
		}
		pinned[f[0]] = f[1]
		order = append(order, f[0])
	}
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return append(problems, fmt.Sprintf("list migrations: %v", err))
	}
	present := map[string]bool{}
	for _, name := range names {
		base := path.Base(name)
		present[base] = true
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("read %s: %v", name, err))
			continue
		}
		s := sha256.Sum256(body)
		got := hex.EncodeToString(s[:])
		want, ok := pinned[base]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s has no line in %s: if it is a new migration, add the line %q (sha256sum %s); "+
				"a released migration must never be renamed or renumbered", name, sumFile, base+" "+got, name))
		case got != want:
			problems = append(problems, fmt.Sprintf("%s changed since it was released (sha256 %s, %s pins %s): "+
				"a released migration must never be edited; restore it and make the change in a new migration", name, got, sumFile, want))
		}
	}
	for _, base := range order {
		if !present[base] {
			problems = append(problems, fmt.Sprintf("%s pins %s, which is gone: a released migration must never be renamed, renumbered or removed; "+
				"restore it under its released name", sumFile, base))
		}
	}
	return problems
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}
