package harness

import (
	"strings"
	"testing"
)

// The harness itself: it must fail where Argo CD fails, or the health tests prove nothing.

var object = map[string]any{
	"apiVersion": "perennial.dev/v1alpha1",
	"kind":       "DriftPolicy",
	"metadata":   map[string]any{"name": "p", "generation": int64(3)},
	"status":     map[string]any{"observedGeneration": float64(3), "conditions": []any{map[string]any{"type": "Ready"}}},
}

func TestObjIsTheObject(t *testing.T) {
	script := `return {status = "Healthy", message = obj.metadata.name .. " " .. obj.metadata.generation ..
		" " .. obj.status.observedGeneration .. " " .. #obj.status.conditions .. " " .. obj.status.conditions[1].type}`
	got, err := ExecuteHealthLua(object, script, Restricted)
	if err != nil {
		t.Fatal(err)
	}
	if *got != (HealthStatus{Status: "Healthy", Message: "p 3 3 1 Ready"}) {
		t.Fatalf("got %+v", *got)
	}
}

func TestAnInvalidStatusIsUnknown(t *testing.T) {
	got, err := ExecuteHealthLua(object, `return {status = "Fine"}`, OpenLibs)
	if err != nil {
		t.Fatal(err)
	}
	if *got != (HealthStatus{Status: "Unknown", Message: invalidHealthStatus}) {
		t.Fatalf("got %+v", *got)
	}
}

func TestRestrictedLibrariesAreRestricted(t *testing.T) {
	for _, script := range []string{
		`return {status = string.format("%s", "Healthy")}`,
		`return {status = ("Healthy"):lower()}`,
		`return {status = "Healthy", message = tostring(math.floor(1.5))}`,
		`return {status = "Healthy", message = tostring(os.time())}`,
	} {
		if _, err := ExecuteHealthLua(object, script, Restricted); err == nil {
			t.Errorf("restricted libraries ran %q", script)
		}
		if _, err := ExecuteHealthLua(object, script, OpenLibs); err != nil {
			t.Errorf("open libraries failed %q: %v", script, err)
		}
	}
}

func TestAScriptMustReturnATable(t *testing.T) {
	if _, err := ExecuteHealthLua(object, `return "Healthy"`, OpenLibs); err == nil {
		t.Fatal("a string return was accepted")
	}
}

func TestARunawayScriptIsStopped(t *testing.T) {
	_, err := ExecuteHealthLua(object, `while true do end`, OpenLibs)
	if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("got %v", err)
	}
}

// Argo CD's safe os: `require("os")` gives time and date in both library settings, on the
// harness's clock, with the strftime flags Argo CD supports.
func TestSafeOsIsArgoCDs(t *testing.T) {
	fixClock(t) // 2026-11-26T12:00:00Z, a Thursday
	for script, want := range map[string]string{
		`return os.date("!%Y-%m-%dT%H:%M:%SZ")`: "2026-11-26T12:00:00Z",
		// Argo CD's %a is the literal "mon" (its layout table says "mon", not "Mon").
		`return os.date("!%F %X %a %b %% %q %")`: "2026-11-26 12:00:00 mon Nov % %q %",
		`return tostring(os.time())`:             "1795694400",
		`return tostring(os.date("!*t").wday)`:   "5",
		`return os.date("!%Y", 0)`:               "1970",
	} {
		wrapped := `local os = require("os")
			local value = (function() ` + script + ` end)()
			return {status = "Healthy", message = value}`
		got, err := ExecuteHealthLua(object, wrapped, Restricted)
		if err != nil {
			t.Errorf("%s: %v", script, err)
			continue
		}
		if got.Message != want {
			t.Errorf("%s: got %q, want %q", script, got.Message, want)
		}
	}
	// Argo CD's OpenSafeOs registers them under the name of the table library, which
	// already exists: nothing is added there, and no global os appears.
	probe := `return {status = "Healthy", message = tostring(table.date) .. " " .. tostring(os)}`
	got, err := ExecuteHealthLua(object, probe, Restricted)
	if err != nil || got.Message != "nil nil" {
		t.Fatalf("table.date and os: %v %v", got, err)
	}
}

func TestActionDiscoveryAndOutputShapes(t *testing.T) {
	actions, err := ExecuteResourceActionDiscovery(object, `return {}`, Restricted)
	if err != nil || len(actions) != 0 {
		t.Fatalf("an empty table offers nothing: %v %v", actions, err)
	}
	actions, err = ExecuteResourceActionDiscovery(object,
		`return {b = {}, a = {disabled = true, displayName = "A"}}`, Restricted)
	if err != nil {
		t.Fatal(err)
	}
	want := []ResourceAction{{Name: "a", Disabled: true, DisplayName: "A"}, {Name: "b"}}
	if len(actions) != 2 || actions[0] != want[0] || actions[1] != want[1] {
		t.Fatalf("got %+v", actions)
	}
	impacted, err := ExecuteResourceAction(object,
		`return {{operation = "create", resource = {kind = "ConfigMap"}}, {operation = "patch", resource = obj}}`, Restricted)
	if err != nil || len(impacted) != 2 || impacted[0].Operation != Create || impacted[1].Operation != Patch {
		t.Fatalf("new-style output: %+v %v", impacted, err)
	}
	if _, err := ExecuteResourceAction(object, `return {{operation = "delete", resource = obj}}`, Restricted); err == nil {
		t.Fatal("an unsupported operation was accepted")
	}
	// An empty map becomes an empty Lua table, which gopher-json encodes as []: Argo CD
	// turns it back into a map, so the patch it sends is empty.
	withEmpty := map[string]any{"kind": "K", "spec": map[string]any{"labels": map[string]any{}, "list": []any{}}}
	impacted, err = ExecuteResourceAction(withEmpty, `return obj`, Restricted)
	if err != nil {
		t.Fatal(err)
	}
	if patch := MergePatch(withEmpty, impacted[0].Object); len(patch) != 0 {
		t.Fatalf("an unchanged object patches %v", patch)
	}
}

func TestMergePatchIsRFC7386(t *testing.T) {
	live := map[string]any{"a": 1, "b": map[string]any{"c": "x", "d": "y"}, "e": []any{1, 2}}
	changed := map[string]any{"a": 1, "b": map[string]any{"c": "z"}, "e": []any{1}, "f": true}
	got := compact(MergePatch(live, changed))
	if want := `{"b":{"c":"z","d":null},"e":[1],"f":true}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
