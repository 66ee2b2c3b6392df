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
