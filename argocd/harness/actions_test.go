package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// Resource actions in Argo CD's layout: resource_customizations/<group>/<Kind>/actions/
// {discovery.lua, <action>/action.lua, action_test.yaml, testdata/*.yaml}, and in
// argocd-cm as resource.customizations.actions.<group>_<Kind>.

// The actions each kind must offer.
var requiredActions = map[string][]string{
	"ModelDeployment": {"pause", "resume", "retrain"},
}

// The instant the safe os reports during action tests: an action that writes the time
// writes this one, so its expected output is exact.
var actionTestTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// The JSON merge patch Argo CD sends for each action (every test of it): the action
// changes this and nothing else, and never status.
var expectedPatches = map[string]string{
	"ModelDeployment/retrain": `{"metadata": {"annotations": {"perennial.dev/retrain-request": "argocd-2026-11-26T12:00:00Z"}}}`,
	"ModelDeployment/pause":   `{"spec": {"suspend": true}}`,
	"ModelDeployment/resume":  `{"spec": {"suspend": false}}`,
}

// Argo CD's action_test.yaml format (argo-cd util/lua/custom_actions_test.go).
type actionTestStructure struct {
	DiscoveryTests []discoveryTest `json:"discoveryTests"`
	ActionTests    []actionTest    `json:"actionTests"`
}

type discoveryTest struct {
	InputPath string           `json:"inputPath"`
	Result    []ResourceAction `json:"result"`
}

type actionTest struct {
	Action               string `json:"action"`
	InputPath            string `json:"inputPath"`
	ExpectedOutputPath   string `json:"expectedOutputPath"`
	ExpectedErrorMessage string `json:"expectedErrorMessage"`
}

// kindActions is one kind's actions folder and its tests.
type kindActions struct {
	kind, dir string
	tests     actionTestStructure
}

// actionScripts is a discovery script and each action's script, from files or argocd-cm.
type actionScripts struct {
	discovery string
	actions   map[string]string
}

func collectActions(t *testing.T) []kindActions {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(customizations, group, "*", "actions", "action_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	var kinds []kindActions
	for _, path := range paths {
		dir := filepath.Dir(path)
		found := kindActions{kind: filepath.Base(filepath.Dir(dir)), dir: dir}
		readYAML(t, path, &found.tests)
		if len(found.tests.DiscoveryTests) == 0 || len(found.tests.ActionTests) == 0 {
			t.Errorf("%s needs discoveryTests and actionTests", path)
		}
		kinds = append(kinds, found)
	}
	return kinds
}

func fileScripts(t *testing.T, k kindActions) actionScripts {
	t.Helper()
	read := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	scripts := actionScripts{discovery: read(filepath.Join(k.dir, "discovery.lua")), actions: map[string]string{}}
	folders, err := filepath.Glob(filepath.Join(k.dir, "*", "action.lua"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range folders {
		scripts.actions[filepath.Base(filepath.Dir(path))] = read(path)
	}
	return scripts
}

// configMapActions returns the scripts resource.customizations.actions.<group>_<kind>
// gives Argo CD (Argo CD's v1alpha1.ResourceActions, a YAML document in a string).
func configMapActions(t *testing.T, kind string) actionScripts {
	t.Helper()
	key := ActionsKey(group, kind)
	value, ok := configMapData(t)[key]
	if !ok {
		t.Fatalf("argocd-cm has no %s", key)
	}
	parsed, err := ParseActions(value)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return actionScripts{discovery: parsed.Discovery, actions: parsed.Actions}
}

func readObject(t *testing.T, k kindActions, path string) map[string]any {
	t.Helper()
	var obj map[string]any
	readYAML(t, filepath.Join(k.dir, path), &obj)
	if obj["kind"] != k.kind || !strings.HasPrefix(fmt.Sprint(obj["apiVersion"]), group+"/") {
		t.Fatalf("%s is a %v %v, not a %s/%s", path, obj["apiVersion"], obj["kind"], group, k.kind)
	}
	return obj
}

// expectedObjects reads an expected output: one object (an old-style action's output) or
// a list of {operation, resource} (a new-style action's), as Argo CD's test does.
func expectedObjects(t *testing.T, k kindActions, path string) []ImpactedResource {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(k.dir, path))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(bytes.TrimLeft(data, " \n"), []byte("-")) {
		var list []ImpactedResource
		if err := yaml.Unmarshal(data, &list); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return list
	}
	var obj map[string]any
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []ImpactedResource{{Object: obj, Operation: Patch}}
}

func identity(obj map[string]any) string {
	metadata, _ := obj["metadata"].(map[string]any)
	return fmt.Sprintf("%v %v %v/%v", obj["apiVersion"], obj["kind"], metadata["namespace"], metadata["name"])
}

func fixClock(t *testing.T) {
	t.Helper()
	previous := Clock
	Clock = func() time.Time { return actionTestTime }
	t.Cleanup(func() { Clock = previous })
}

func checkDiscovery(t *testing.T, k kindActions, test discoveryTest, script string, libs Libraries) {
	t.Helper()
	got, err := ExecuteResourceActionDiscovery(readObject(t, k, test.InputPath), script, libs)
	if err != nil {
		t.Fatalf("%s (%s): %v", test.InputPath, libs, err)
	}
	want := append([]ResourceAction(nil), test.Result...)
	sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s (%s):\n  got  %+v\n  want %+v", test.InputPath, libs, got, want)
	}
}

func checkAction(t *testing.T, k kindActions, test actionTest, scripts actionScripts, libs Libraries) {
	t.Helper()
	fixClock(t)
	script, ok := scripts.actions[test.Action]
	if !ok {
		t.Fatalf("no script for action %s", test.Action)
	}
	source := readObject(t, k, test.InputPath)
	impacted, err := ExecuteResourceAction(source, script, libs)
	if test.ExpectedErrorMessage != "" {
		if err == nil || err.Error() != test.ExpectedErrorMessage {
			t.Fatalf("%s (%s): got error %v, want %q", test.InputPath, libs, err, test.ExpectedErrorMessage)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s (%s): %v", test.InputPath, libs, err)
	}
	expected := expectedObjects(t, k, test.ExpectedOutputPath)
	if len(impacted) != len(expected) {
		t.Fatalf("%s (%s): %d objects returned, %d expected", test.InputPath, libs, len(impacted), len(expected))
	}
	for _, got := range impacted {
		var want *ImpactedResource
		for i := range expected {
			if identity(expected[i].Object) == identity(got.Object) {
				want = &expected[i]
			}
		}
		if want == nil {
			t.Errorf("%s (%s): %s is in no expected output", test.InputPath, libs, identity(got.Object))
			continue
		}
		if got.Operation != want.Operation {
			t.Errorf("%s (%s): %s: operation %s, want %s", test.InputPath, libs, identity(got.Object), got.Operation, want.Operation)
		}
		if got.Operation == Patch && identity(got.Object) != identity(source) {
			t.Errorf("%s (%s): a patch may only change the source object, not %s", test.InputPath, libs, identity(got.Object))
		}
		if difference := MergePatch(normalized(want.Object), got.Object); len(difference) > 0 {
			t.Errorf("%s (%s): output differs from %s by %s", test.InputPath, libs, test.ExpectedOutputPath, compact(difference))
		}
	}
}

func compact(value any) string {
	data, err := json.Marshal(value)
	if err != nil {
		return fmt.Sprint(value)
	}
	return string(data)
}

// TestLuaResourceActionsScript is Argo CD's own test of built-in actions: each discovery
// case (open libraries) and each action case (restricted libraries, as the API server
// runs actions) of action_test.yaml, against the scripts in the actions folder. Unlike
// Argo CD's, it compares the discovered actions as a whole, not one by one.
func TestLuaResourceActionsScript(t *testing.T) {
	for _, k := range collectActions(t) {
		scripts := fileScripts(t, k)
		for _, test := range k.tests.DiscoveryTests {
			t.Run(k.kind+"/discovery/"+test.InputPath, func(t *testing.T) {
				checkDiscovery(t, k, test, scripts.discovery, OpenLibs)
			})
		}
		for _, test := range k.tests.ActionTests {
			t.Run(k.kind+"/actions/"+test.Action+"/"+test.InputPath, func(t *testing.T) {
				checkAction(t, k, test, scripts, Restricted)
			})
		}
	}
}

// TestArgoCDConfigMapActions runs the same cases against the scripts argocd-cm.yaml
// delivers, discovery included, with the restricted libraries Argo CD's API server uses.
func TestArgoCDConfigMapActions(t *testing.T) {
	for _, k := range collectActions(t) {
		scripts := configMapActions(t, k.kind)
		for _, test := range k.tests.DiscoveryTests {
			t.Run(k.kind+"/discovery/"+test.InputPath, func(t *testing.T) {
				checkDiscovery(t, k, test, scripts.discovery, Restricted)
			})
		}
		for _, test := range k.tests.ActionTests {
			t.Run(k.kind+"/actions/"+test.Action+"/"+test.InputPath, func(t *testing.T) {
				checkAction(t, k, test, scripts, Restricted)
			})
		}
	}
}

// TestActionPatches: what reaches the API server. Argo CD sends the merge patch from the
// live object to the action's output; each action's patch is exactly the expected one.
func TestActionPatches(t *testing.T) {
	fixClock(t)
	for _, k := range collectActions(t) {
		scripts := fileScripts(t, k)
		for _, test := range k.tests.ActionTests {
			if test.ExpectedErrorMessage != "" {
				continue
			}
			name := k.kind + "/" + test.Action
			t.Run(name+"/"+test.InputPath, func(t *testing.T) {
				want, ok := expectedPatches[name]
				if !ok {
					t.Fatalf("no expected patch for %s", name)
				}
				source := readObject(t, k, test.InputPath)
				impacted, err := ExecuteResourceAction(source, scripts.actions[test.Action], Restricted)
				if err != nil {
					t.Fatal(err)
				}
				if len(impacted) != 1 || impacted[0].Operation != Patch {
					t.Fatalf("want one patch of the source object, got %d objects", len(impacted))
				}
				got := MergePatch(source, impacted[0].Object)
				var wanted map[string]any
				if err := json.Unmarshal([]byte(want), &wanted); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, wanted) {
					t.Errorf("patch %s, want %s", compact(got), compact(wanted))
				}
			})
		}
	}
}

// TestActionCoverage: every action has a folder, a test and a place in discovery; every
// action that discovery can disable is seen enabled too; every testdata file is used.
func TestActionCoverage(t *testing.T) {
	kinds := collectActions(t)
	byKind := map[string]kindActions{}
	for _, k := range kinds {
		byKind[k.kind] = k
	}
	for kind, names := range requiredActions {
		k, ok := byKind[kind]
		if !ok {
			t.Errorf("%s has no actions/action_test.yaml", kind)
			continue
		}
		scripts := fileScripts(t, k)
		var folders []string
		for name := range scripts.actions {
			folders = append(folders, name)
		}
		sort.Strings(folders)
		if !reflect.DeepEqual(folders, names) {
			t.Errorf("%s: action folders %v, want %v", kind, folders, names)
		}
	}
	for _, k := range kinds {
		scripts := fileScripts(t, k)
		used := map[string]bool{}
		tested := map[string]bool{}
		states := map[string]map[bool]bool{}
		for _, test := range k.tests.DiscoveryTests {
			used[filepath.Clean(test.InputPath)] = true
			for _, action := range test.Result {
				if states[action.Name] == nil {
					states[action.Name] = map[bool]bool{}
				}
				states[action.Name][action.Disabled] = true
			}
		}
		for _, test := range k.tests.ActionTests {
			used[filepath.Clean(test.InputPath)] = true
			if test.ExpectedOutputPath != "" {
				used[filepath.Clean(test.ExpectedOutputPath)] = true
			}
			tested[test.Action] = true
		}
		for name := range scripts.actions {
			if !tested[name] {
				t.Errorf("%s: action %s has no actionTests case", k.kind, name)
			}
			if states[name] == nil {
				t.Errorf("%s: discovery never offers %s", k.kind, name)
			}
		}
		for name, seen := range states {
			if _, ok := scripts.actions[name]; !ok {
				t.Errorf("%s: discovery offers %s, which has no %s/action.lua", k.kind, name, name)
			}
			if seen[true] && !seen[false] {
				t.Errorf("%s: no discovery case enables %s", k.kind, name)
			}
		}
		files, err := filepath.Glob(filepath.Join(k.dir, "testdata", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			relative, _ := filepath.Rel(k.dir, file)
			if !used[filepath.Clean(relative)] {
				t.Errorf("%s is in no action_test.yaml", file)
			}
		}
	}
}
