package architecture

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/enqueueapp"
)

// readDoc returns a file of the repository as text.
func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// userDocs are the README and the pages its short sections hand the
// details to: what a user or an operator reads. A command, a test or a
// table moved from the README to one of these pages is checked there.
var userDocs = []string{"README.md", "docs/operations.md", "docs/fair-dispatch.md", "docs/guarantees.md"}

// readUserDocs returns userDocs joined, each after a blank line.
func readUserDocs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, name := range userDocs {
		b.WriteString("\n")
		b.WriteString(readDoc(t, name))
	}
	return b.String()
}

// section returns the text of the markdown section headed "## title" (up
// to the next "## " heading).
func section(t *testing.T, doc, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// envRead returns the environment variables config.Parse reads.
func envRead(t *testing.T) []string {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]bool{}
	if _, err := config.Parse(func(name string) string {
		mu.Lock()
		defer mu.Unlock()
		seen[name] = true
		return ""
	}); err != nil {
		t.Fatalf("config.Parse of an empty environment: %v", err)
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 20 {
		t.Fatalf("config.Parse reads %d variables; the recording getenv seems broken", len(names))
	}
	return names
}

// configRow matches a row of the README's configuration table and
// captures its variable.
var configRow = regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|")

// TestReadmeConfigurationTable: every variable the binaries read
// (config.Parse) is in the README's configuration table, and every row of
// the table is a variable they read. A variable kept only for
// compatibility may be named in another variable's row instead.
func TestReadmeConfigurationTable(t *testing.T) {
	t.Parallel()
	sec := section(t, readDoc(t, "README.md"), "Configuration")
	read := envRead(t)
	var rows []string
	for _, m := range configRow.FindAllStringSubmatch(sec, -1) {
		rows = append(rows, m[1])
	}
	if len(rows) < 20 {
		t.Fatalf("the README's configuration table has %d rows; the table seems to be gone", len(rows))
	}
	for _, name := range read {
		if !slices.Contains(rows, name) && !strings.Contains(sec, "`"+name+"`") {
			t.Errorf("config.Parse reads %s, which the README's configuration table does not name", name)
		}
	}
	for _, name := range rows {
		if !slices.Contains(read, name) {
			t.Errorf("the README's configuration table has a row for %s, which config.Parse does not read", name)
		}
	}
}

// TestEnqueueHelpNamesReadVariables: the environment variables `enqueue
// help` lists are ones the binaries read.
func TestEnqueueHelpNamesReadVariables(t *testing.T) {
	t.Parallel()
	read := envRead(t)
	help := enqueueHelp(t, "help")
	_, env, ok := strings.Cut(help, "Configuration comes from the environment:")
	if !ok {
		t.Fatalf("enqueue help lists no environment:\n%s", help)
	}
	names := regexp.MustCompile(`\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b`).FindAllString(env, -1)
	if len(names) < 5 {
		t.Fatalf("enqueue help names %d variables:\n%s", len(names), env)
	}
	for _, n := range names {
		if !slices.Contains(read, n) {
			t.Errorf("enqueue help names %s, which config.Parse does not read", n)
		}
	}
}

// enqueueHelp runs the enqueue command line with args and returns what it
// printed on stdout; it must exit 0 (as for --help).
func enqueueHelp(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := enqueueapp.Main(context.Background(), args, enqueueapp.IO{
		Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" },
	})
	if code != enqueueapp.ExitOK {
		t.Fatalf("enqueue %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// helpFlag matches a flag in the flag package's PrintDefaults output.
var helpFlag = regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`)

// TestReadmeEnqueueCommands: every command and subcommand of the enqueue
// CLI is shown in the README or the pages it links for the details
// (userDocs: a code span starting "enqueue <command>"), with every flag its
// --help lists; and every flag they show for a command is one the command
// has.
func TestReadmeEnqueueCommands(t *testing.T) {
	t.Parallel()
	readme := readUserDocs(t)
	var spans []string
	for _, m := range regexp.MustCompile("`(enqueue [^`]*)`").FindAllStringSubmatch(readme, -1) {
		spans = append(spans, strings.Join(strings.Fields(m[1]), " "))
	}
	// The commands `enqueue help` lists.
	var commands []string
	_, list, _ := strings.Cut(enqueueHelp(t, "help"), "commands:\n")
	list, _, _ = strings.Cut(list, "\n\n")
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(list, -1) {
		commands = append(commands, m[1])
	}
	if len(commands) < 5 {
		t.Fatalf("enqueue help lists %d commands:\n%s", len(commands), list)
	}
	subcommands := map[string][]string{"db": {"list", "add", "remove"}, "tenant": {"add", "move", "time-zone"}, "documents": {"prune"}}
	for _, c := range commands {
		names := []string{c}
		if subs, ok := subcommands[c]; ok {
			names = nil
			for _, s := range subs {
				names = append(names, c+" "+s)
			}
		}
		for _, name := range names {
			var shown []string
			for _, s := range spans {
				if s == "enqueue "+name || strings.HasPrefix(s, "enqueue "+name+" ") {
					shown = append(shown, s)
				}
			}
			if len(shown) == 0 {
				t.Errorf("neither the README nor docs/{operations,fair-dispatch,guarantees}.md shows `enqueue %s`", name)
				continue
			}
			var flags []string
			for _, m := range helpFlag.FindAllStringSubmatch(enqueueHelp(t, append(strings.Fields(name), "--help")...), -1) {
				flags = append(flags, m[1])
			}
			all := strings.Join(shown, " ")
			for _, f := range flags {
				if !regexp.MustCompile(`--` + regexp.QuoteMeta(f) + `\b`).MatchString(all) {
					t.Errorf("the README and its pages show `enqueue %s` without its flag --%s", name, f)
				}
			}
			for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(all, -1) {
				if !slices.Contains(flags, m[1]) {
					t.Errorf("the README or one of its pages shows `enqueue %s` with --%s, which it does not have", name, m[1])
				}
			}
		}
	}
}

// TestPackageTableImports: the "imports (inside the module)" column of
// docs/architecture.md's package table is what each package imports.
func TestPackageTableImports(t *testing.T) {
	t.Parallel()
	sec := section(t, readDoc(t, "docs/architecture.md"), "Packages")
	documented := map[string][]string{} // package -> its row's imports cell
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		pkgs := regexp.MustCompile("`([a-z][a-z0-9/_]*)`").FindAllStringSubmatch(cells[1], -1)
		if len(pkgs) == 1 { // a row of several packages describes them together
			documented[pkgs[0][1]] = append(documented[pkgs[0][1]], cells[3])
		}
	}
	if len(documented) < 15 {
		t.Fatalf("found %d packages in docs/architecture.md's table", len(documented))
	}
	for _, p := range goList(t, "./...") {
		me := rel(p.ImportPath)
		cellsOf, ok := documented[me]
		if !ok || len(cellsOf) != 1 {
			continue // rows of several packages; TestDocsNameEveryPackage checks each is named
		}
		cell := strings.TrimSpace(cellsOf[0])
		if strings.HasPrefix(cell, "(") || strings.HasPrefix(cell, "their ") || cell == "" {
			continue // "(tests only)", the mains' description
		}
		var want []string
		for _, imp := range p.Imports {
			if d := rel(imp); d != "" {
				want = append(want, d)
			}
		}
		var got []string
		if cell != "nothing" {
			for _, m := range regexp.MustCompile("`([a-z][a-z0-9/_]*)`").FindAllStringSubmatch(cell, -1) {
				got = append(got, m[1])
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			t.Errorf("docs/architecture.md: %s imports %v, its row says %v", me, want, got)
		}
	}
}

// TestDocTablesWellFormed: every row of a table in the README and the
// pages under docs/ has as many cells as its header, so that no cell (such
// as the tests guarding an invariant) is dropped when it renders.
func TestDocTablesWellFormed(t *testing.T) {
	t.Parallel()
	for _, name := range docFiles(t) {
		header := -1
		fenced := false
		for i, line := range strings.Split(readDoc(t, name), "\n") {
			if strings.HasPrefix(line, "```") {
				fenced = !fenced
			}
			if fenced || !strings.HasPrefix(line, "|") {
				header = -1
				continue
			}
			n := strings.Count(line, "|") - strings.Count(line, `\|`)
			if header < 0 {
				header = n
				continue
			}
			if n != header {
				t.Errorf("%s:%d: a table row with %d cells under a header of %d", name, i+1, n-1, header-1)
			}
		}
	}
}

// mdLink matches the target of a markdown link, [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// headingAnchors returns the anchors GitHub gives the headings of a
// markdown document: the heading lowercased, every character but letters,
// digits, '_', '-' and spaces dropped, spaces made '-', and "-1", "-2" ...
// added to repeats.
func headingAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimLeft(line, "#")
		if len(line)-len(title) > 6 || !strings.HasPrefix(title, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			anchors[a+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors
}

// TestDocLinksResolve: every relative link of the README, the pages under
// docs/ and integration/bench/README.md names a file of the repository,
// and its #fragment, for a markdown file, one of that file's headings. The
// README hands its details to docs/ pages by such links, and a heading
// renamed or a passage moved must not leave one pointing at nothing.
func TestDocLinksResolve(t *testing.T) {
	t.Parallel()
	files := append(docFiles(t), "integration/bench/README.md")
	anchorsOf := map[string]map[string]bool{}
	for _, name := range files {
		var text strings.Builder
		fenced := false
		for _, line := range strings.Split(readDoc(t, name), "\n") {
			if strings.HasPrefix(line, "```") {
				fenced = !fenced
			}
			if !fenced {
				text.WriteString(line + "\n")
			}
		}
		for _, m := range mdLink.FindAllStringSubmatch(text.String(), -1) {
			target := m[1]
			if regexp.MustCompile(`^[a-z]+:`).MatchString(target) {
				continue // http:, https:, mailto:
			}
			file, frag, _ := strings.Cut(target, "#")
			dest := name
			if file != "" {
				dest = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(name), file)))
			}
			if _, err := os.Stat(filepath.Join(root(t), dest)); err != nil {
				t.Errorf("%s: link %s: %v", name, target, err)
				continue
			}
			if frag == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			if anchorsOf[dest] == nil {
				anchorsOf[dest] = headingAnchors(readDoc(t, dest))
			}
			if !anchorsOf[dest][frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", name, target, dest, frag)
			}
		}
	}
}
