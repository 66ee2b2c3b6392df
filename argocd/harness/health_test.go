package harness

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The layout Argo CD uses: resource_customizations/<group>/<Kind>/{health.lua,
// health_test.yaml, testdata/*.yaml}, beside argocd-cm.yaml. PERENNIAL_ARGOCD_DIR points
// the tests at another copy of argocd/ (the e2e test's freshly captured testdata).
var (
	argocdDir      = envOr("PERENNIAL_ARGOCD_DIR", "..")
	customizations = filepath.Join(argocdDir, "resource_customizations")
	argocdCM       = filepath.Join(argocdDir, "argocd-cm.yaml")
)

const group = "perennial.dev"

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// What each kind's tests must cover, at least.
var requiredStatuses = map[string][]string{
	"TrainingJob":     {"Progressing", "Healthy", "Degraded"},
	"ModelDeployment": {"Progressing", "Healthy", "Degraded", "Suspended"},
	"DriftPolicy":     {"Progressing", "Healthy", "Degraded", "Suspended"},
}

// Argo CD's health_test.yaml format (argo-cd util/lua/health_test.go).
type testStructure struct {
	Tests []individualTest `json:"tests"`
}

type individualTest struct {
	InputPath    string       `json:"inputPath"`
	HealthStatus HealthStatus `json:"healthStatus"`
}

type healthCase struct {
	kind, dir string
	test      individualTest
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
}

func collect(t *testing.T) []healthCase {
	t.Helper()
	var cases []healthCase
	err := filepath.WalkDir(customizations, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "health.lua" {
			return nil
		}
		dir := filepath.Dir(path)
		var tests testStructure
		readYAML(t, filepath.Join(dir, "health_test.yaml"), &tests)
		if len(tests.Tests) == 0 {
			t.Errorf("%s/health_test.yaml has no tests", dir)
		}
		for _, test := range tests.Tests {
			cases = append(cases, healthCase{kind: filepath.Base(dir), dir: dir, test: test})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(cases, func(i, j int) bool {
		return cases[i].kind+cases[i].test.InputPath < cases[j].kind+cases[j].test.InputPath
	})
	return cases
}

// configMapData returns the data of argocd-cm.yaml, the keys Argo CD reads.
func configMapData(t *testing.T) map[string]string {
	t.Helper()
	data, err := ReadConfigMap(argocdCM)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// configMapScripts returns the health scripts argocd-cm.yaml gives Argo CD, by kind.
func configMapScripts(t *testing.T) map[string]string {
	t.Helper()
	scripts := map[string]string{}
	prefix := "resource.customizations.health." + group + "_"
	for key, value := range configMapData(t) {
		if strings.HasPrefix(key, prefix) {
			scripts[strings.TrimPrefix(key, prefix)] = value
		}
	}
	return scripts
}

func TestEveryKindHasAHealthCheck(t *testing.T) {
	for kind := range requiredStatuses {
		if _, err := os.Stat(filepath.Join(customizations, group, kind, "health.lua")); err != nil {
			t.Errorf("%s has no health.lua: %v", kind, err)
		}
	}
}

// TestLuaHealthScript is Argo CD's own test of a built-in health check: every case of
// health_test.yaml against its testdata object, status and message compared exactly, with
// open libraries.
func TestLuaHealthScript(t *testing.T) {
	for _, c := range collect(t) {
		t.Run(c.kind+"/"+c.test.InputPath, func(t *testing.T) {
			script, err := os.ReadFile(filepath.Join(c.dir, "health.lua"))
			if err != nil {
				t.Fatal(err)
			}
			checkCase(t, c, string(script), OpenLibs)
		})
	}
}

// TestArgoCDConfigMapScripts runs the same cases against the scripts as argocd-cm
// delivers them, with the libraries Argo CD allows such scripts by default.
func TestArgoCDConfigMapScripts(t *testing.T) {
	scripts := configMapScripts(t)
	for _, c := range collect(t) {
		t.Run(c.kind+"/"+c.test.InputPath, func(t *testing.T) {
			script, ok := scripts[c.kind]
			if !ok {
				t.Fatalf("argocd-cm has no resource.customizations.health.%s_%s", group, c.kind)
			}
			checkCase(t, c, script, Restricted)
		})
	}
}

func checkCase(t *testing.T, c healthCase, script string, libs Libraries) {
	t.Helper()
	var obj map[string]any
	readYAML(t, filepath.Join(c.dir, c.test.InputPath), &obj)
	if obj["kind"] != c.kind || !strings.HasPrefix(fmt.Sprint(obj["apiVersion"]), group+"/") {
		t.Fatalf("%s is a %v %v, not a %s/%s", c.test.InputPath, obj["apiVersion"], obj["kind"], group, c.kind)
	}
	got, err := ExecuteHealthLua(obj, script, libs)
	if err != nil {
		t.Fatalf("%s (%s): %v", c.test.InputPath, libs, err)
	}
	if *got != c.test.HealthStatus {
		t.Errorf("%s (%s):\n  got  %+v\n  want %+v", c.test.InputPath, libs, *got, c.test.HealthStatus)
	}
}

// TestCoverage: every kind's tests cover its statuses, and every testdata file is used.
func TestCoverage(t *testing.T) {
	seen := map[string]map[string]bool{}
	used := map[string]bool{}
	for _, c := range collect(t) {
		if seen[c.kind] == nil {
			seen[c.kind] = map[string]bool{}
		}
		seen[c.kind][c.test.HealthStatus.Status] = true
		used[filepath.Clean(filepath.Join(c.dir, c.test.InputPath))] = true
	}
	for kind, statuses := range requiredStatuses {
		for _, status := range statuses {
			if !seen[kind][status] {
				t.Errorf("%s: no test expects %s", kind, status)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(customizations, group, "*", "testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if !used[filepath.Clean(file)] {
			t.Errorf("%s is in no health_test.yaml", file)
		}
	}
}
