package archtest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestEveryImportIsInTheArchitectureTable derives the imports between the module's folders
// from the code (go list) and fails for each one the "depends on" column of
// docs/ARCHITECTURE.md does not list, for each one it lists that the code does not have (a
// dependency removed stays out of the picture), and for each package no row of the table covers.
func TestEveryImportIsInTheArchitectureTable(t *testing.T) {
	root := moduleRoot(t)
	table := readTable(t, filepath.Join(root, "docs", "ARCHITECTURE.md"))
	module, pkgs := listPackages(t, root)

	seen := map[[2]string]bool{} // the edges the code has, folder to folder
	for _, p := range pkgs {
		from, ok := folderOf(table, strings.TrimPrefix(p.ImportPath, module+"/"))
		if !ok {
			t.Errorf("package %s is in no row of the table in docs/ARCHITECTURE.md", p.ImportPath)
			continue
		}
		allowed := table[from]
		for _, imp := range p.Imports {
			rel, inModule := strings.CutPrefix(imp, module+"/")
			if !inModule {
				continue
			}
			to, ok := folderOf(table, rel)
			if !ok || to == from {
				continue // reported as a package of its own, or within one folder
			}
			seen[[2]string{from, strings.TrimSuffix(to, "/")}] = true
			if !allowed.all && !slices.Contains(allowed.deps, strings.TrimSuffix(to, "/")) {
				t.Errorf("%s imports %s, but the row of %s/ in docs/ARCHITECTURE.md does not list %s", p.ImportPath, imp, from, to)
			}
		}
	}
	for from, r := range table {
		for _, to := range r.deps {
			if !seen[[2]string{from, to}] {
				t.Errorf("the row of %s/ in docs/ARCHITECTURE.md lists %s, but no package of %s/ imports it", from, to, from)
			}
		}
	}
}

// row is the "depends on" column of one folder.
type row struct {
	deps []string
	all  bool // "everything"
}

// readTable reads the package table of the section "Packages": | `folder/` | what | depends on |.
func readTable(t *testing.T, path string) map[string]row {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table := map[string]row{}
	sc := bufio.NewScanner(f)
	inPackages := false // other sections have tables of the same form (the read models')
	for sc.Scan() {
		if heading, ok := strings.CutPrefix(sc.Text(), "## "); ok {
			inPackages = strings.HasPrefix(heading, "Packages")
		}
		if !inPackages {
			continue
		}
		cells := strings.Split(sc.Text(), "|")
		if len(cells) != 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		folder := strings.TrimSuffix(strings.Trim(strings.TrimSpace(cells[1]), "`"), "/")
		var r row
		for _, d := range strings.Split(cells[3], ",") {
			switch d = strings.TrimSpace(d); d {
			case "", "—":
			case "everything":
				r.all = true
			default:
				r.deps = append(r.deps, d)
			}
		}
		table[folder] = r
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(table) == 0 {
		t.Fatalf("no package table found in %s", path)
	}
	return table
}

// folderOf returns the table's row for a package path relative to the module: the longest
// folder of the table that contains it.
func folderOf(table map[string]row, rel string) (string, bool) {
	best := ""
	for folder := range table {
		if (rel == folder || strings.HasPrefix(rel, folder+"/")) && len(folder) > len(best) {
			best = folder
		}
	}
	return best, best != ""
}

type listed struct {
	ImportPath string
	Imports    []string
	Module     *struct{ Path string }
}

// listPackages runs go list over the module and returns its path and its packages' imports
// (not their tests': the table is about what the code depends on).
func listPackages(t *testing.T, root string) (string, []listed) {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 || pkgs[0].Module == nil {
		t.Fatal("go list found no packages of a module")
	}
	return pkgs[0].Module.Path, pkgs
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}
