package architecture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// module is this module's path.
const module = "github.com/invoicing/tenantworker"

// pkg is what `go list -json` says about one package.
type pkg struct {
	ImportPath     string
	Dir            string
	Imports        []string
	Deps           []string
	IgnoredGoFiles []string
}

// allImports are p's non-test imports on every platform: those of the
// files this build uses (p.Imports) and those of the files its build
// constraints leave out here (a storage file for !linux, say), which go
// list does not report.
func allImports(t *testing.T, p pkg) []string {
	t.Helper()
	imports := slices.Clone(p.Imports)
	for _, name := range p.IgnoredGoFiles {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, name), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, spec := range f.Imports {
			path, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				t.Fatalf("%s: import %s: %v", name, spec.Path.Value, err)
			}
			if !slices.Contains(imports, path) {
				imports = append(imports, path)
			}
		}
	}
	return imports
}

// goList runs `go list -json` with args in the module root.
func goList(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = root(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// root is the module's directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", dir, err)
	}
	return dir
}

// rel is a package path relative to the module ("" for another module).
func rel(path string) string {
	if path == module {
		return "."
	}
	r, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return r
}

// TestEnqueueLinksNoExecutors: the enqueue binary is a producer; it links
// no renderer, no fonts, no mailer and no task handler.
func TestEnqueueLinksNoExecutors(t *testing.T) {
	t.Parallel()
	deps := goList(t, "-deps", "./cmd/enqueue")
	for _, p := range deps {
		for _, banned := range []string{"github.com/go-pdf/fpdf", "golang.org/x/image/font/gofont", "github.com/wneessen/go-mail",
			module + "/pdf", module + "/internal/mailer", module + "/internal/worker"} {
			if p.ImportPath == banned || strings.HasPrefix(p.ImportPath, banned+"/") {
				t.Errorf("cmd/enqueue links %s", p.ImportPath)
			}
		}
	}
	if len(deps) == 0 {
		t.Fatal("go list found no dependencies of cmd/enqueue")
	}
}

// testSupport are packages for tests only.
var testSupport = []string{"storage/memstore", "storage/storagetest", "invoice/invoicetest", "internal/testenv", "internal/worker/workertest", "internal/mailer/smtptest"}

// TestImportRules checks the import rules of docs/architecture.md on
// every package's non-test imports, on every platform (files a build
// constraint leaves out here included).
func TestImportRules(t *testing.T) {
	t.Parallel()
	for _, p := range goList(t, "./...") {
		me := rel(p.ImportPath)
		public := !strings.HasPrefix(me, "internal/") && !strings.HasPrefix(me, "cmd/") && !strings.HasPrefix(me, "integration")
		imports := allImports(t, p)
		for _, imp := range imports {
			dep := rel(imp)
			switch {
			case public && strings.HasPrefix(dep, "internal/"):
				t.Errorf("public package %s imports %s: a public API must not expose an internal type", me, dep)
			case dep == "internal/httpapi" && me != "internal/enqueueapp":
				t.Errorf("%s imports internal/httpapi; only internal/enqueueapp may", me)
			case slices.Contains(testSupport, dep) && !slices.Contains(testSupport, me):
				t.Errorf("%s imports the test support package %s", me, dep)
			case dep == "internal/procstat" && !strings.HasPrefix(me, "integration"):
				t.Errorf("%s imports internal/procstat; only the load command and tests may", me)
			}
		}
		banned := map[string][]string{
			"tenantctx":        {"github.com/hibiken/asynq", "github.com/jackc/pgx", "github.com/redis/go-redis"},
			"invoice":          {module + "/schema", module + "/pdf"},
			"internal/tenancy": {"net/http"},
			"schema":           {"github.com/hibiken/asynq", "net/http"},
			"tasks":            {module + "/pdf", module + "/invoice", module + "/schema"},
		}[me]
		for _, imp := range imports {
			for _, b := range banned {
				if imp == b || strings.HasPrefix(imp, b+"/") {
					t.Errorf("%s imports %s", me, imp)
				}
			}
		}
	}
}

// TestDocsNameEveryPackage: docs/architecture.md and the README's package
// table name every package of the module.
func TestDocsNameEveryPackage(t *testing.T) {
	t.Parallel()
	docs := map[string]string{}
	for _, name := range []string{"docs/architecture.md", "README.md"} {
		b, err := os.ReadFile(filepath.Join(root(t), name))
		if err != nil {
			t.Fatal(err)
		}
		docs[name] = string(b)
	}
	for _, p := range goList(t, "./...") {
		me := rel(p.ImportPath)
		for name, text := range docs {
			if name == "README.md" && slices.Contains([]string{"internal/architecture", "storage/storagetest", "storage/memstore", "internal/worker/workertest", "internal/mailer/smtptest"}, me) {
				continue // test support: docs/architecture.md is enough
			}
			if !strings.Contains(text, "`"+me+"`") && !strings.Contains(text, "`"+me+"/`") {
				t.Errorf("%s does not name package %s", name, me)
			}
		}
	}
}

// citedTest matches a test, fuzz target or benchmark named in backticks.
var citedTest = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)`")

// TestCitedTestsExist: every test the README and the pages under docs/
// cite (docs/architecture.md as the guard of an invariant or a failure
// mode, the others for a behaviour they describe) exists, so no page can
// point at nothing, also after a passage moved between pages.
func TestCitedTestsExist(t *testing.T) {
	t.Parallel()
	defined := map[string]bool{}
	decl := regexp.MustCompile(`^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)\(`)
	err := filepath.WalkDir(root(t), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := decl.FindStringSubmatch(sc.Text()); m != nil {
				defined[m[1]] = true
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range docFiles(t) {
		b, err := os.ReadFile(filepath.Join(root(t), name))
		if err != nil {
			t.Fatal(err)
		}
		cited := citedTest.FindAllStringSubmatch(string(b), -1)
		if name == "docs/architecture.md" && len(cited) < 20 {
			t.Fatalf("docs/architecture.md cites %d tests; the tables seem to be gone", len(cited))
		}
		for _, m := range cited {
			if !defined[m[1]] {
				t.Errorf("%s cites %s, which no test file defines", name, m[1])
			}
		}
	}
}

// docFiles returns README.md and every page under docs/, relative to the
// module root.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(root(t), "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"README.md"}
	for _, p := range pages {
		names = append(names, filepath.ToSlash(filepath.Join("docs", filepath.Base(p))))
	}
	if !slices.Contains(names, "docs/architecture.md") {
		t.Fatalf("docs/architecture.md is missing: %v", names)
	}
	return names
}

// TestAuditActionsDocumented: every audit action internal/tenancy writes
// is in docs/architecture.md's table of actions.
func TestAuditActionsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(root(t), "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	decl := regexp.MustCompile(`Action = "([a-z_.]+)"`)
	files, err := filepath.Glob(filepath.Join(root(t), "internal", "tenancy", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			n++
			if !bytes.Contains(doc, []byte("| `"+m[1]+"` |")) {
				t.Errorf("audit action %s (%s) is not in docs/architecture.md's table", m[1], filepath.Base(name))
			}
		}
	}
	if n < 10 {
		t.Fatalf("found %d audit actions in internal/tenancy; the declarations seem to have moved", n)
	}
}

// TestNoOutsideDocuments: nothing in the repository points at documents
// that are not in it; comments cite docs/architecture.md instead.
func TestNoOutsideDocuments(t *testing.T) {
	t.Parallel()
	// Spelled in pieces, so that this file does not match itself.
	outside := []string{"DESIGN" + ".md", "PIT" + "FALLS", "STYLE" + ".md", "FAIRNESS" + ".md", "PERFORMANCE" + ".md", "../" + "shared/"}
	err := filepath.WalkDir(root(t), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "devdata", "data":
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > 1<<20 || !info.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range outside {
			if bytes.Contains(b, []byte(s)) {
				r, _ := filepath.Rel(root(t), path)
				t.Errorf("%s names %s, which is not in the repository", r, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
