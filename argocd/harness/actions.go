package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
)

// ResourceAction is Argo CD's v1alpha1.ResourceAction: what discovery.lua offers.
type ResourceAction struct {
	Name        string `json:"name,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
	IconClass   string `json:"iconClass,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

// Operation is what Argo CD does with an object an action returns.
type Operation string

const (
	// Patch: the source object, changed; Argo CD sends a JSON merge patch of the difference.
	Patch Operation = "patch"
	// Create: a new object (new-style actions only).
	Create Operation = "create"
)

// ImpactedResource is one object an action returns and what Argo CD does with it.
type ImpactedResource struct {
	Object    map[string]any `json:"resource"`
	Operation Operation      `json:"operation"`
}

// ExecuteResourceActionDiscovery is Argo CD's: the discovery script returns a table whose
// keys are action names and whose values say whether each is disabled (and how it shows).
// The result is sorted by name (Argo CD collects it from a map).
func ExecuteResourceActionDiscovery(obj map[string]any, script string, libs Libraries) ([]ResourceAction, error) {
	encoded, err := runForJSON(obj, script, libs)
	if err != nil {
		return nil, err
	}
	if string(encoded) == "[]" { // an empty table: no actions
		return nil, nil
	}
	offered := map[string]any{}
	if err := json.Unmarshal(encoded, &offered); err != nil {
		return nil, fmt.Errorf("error unmarshaling action table: %w", err)
	}
	actions := make([]ResourceAction, 0, len(offered))
	for name, value := range offered {
		action := ResourceAction{Name: name, Disabled: isActionDisabled(value)}
		if _, empty := value.([]any); !empty { // `{}`: an enabled action with no details
			raw, err := json.Marshal(value)
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(raw, &action); err != nil {
				return nil, fmt.Errorf("error unmarshaling resource action: %w", err)
			}
		}
		actions = append(actions, action)
	}
	sort.Slice(actions, func(i, j int) bool { return actions[i].Name < actions[j].Name })
	return actions, nil
}

func isActionDisabled(value any) bool {
	fields, ok := value.(map[string]any)
	if !ok {
		return false
	}
	disabled, ok := fields["disabled"].(bool)
	return ok && disabled
}

// ExecuteResourceAction is Argo CD's: the script changes `obj` and returns it (an
// old-style action, a patch of the source object), or returns a list of
// {operation, resource} (a new-style action). Patched objects are cleaned as Argo CD
// cleans them: a map Lua turned into an empty array becomes an empty map again.
func ExecuteResourceAction(obj map[string]any, script string, libs Libraries) ([]ImpactedResource, error) {
	encoded, err := runForJSON(obj, script, libs)
	if err != nil {
		return nil, err
	}
	if len(encoded) < 2 {
		return nil, errors.New("Lua output was not a valid json object or array")
	}
	var impacted []ImpactedResource
	if encoded[0] == '[' && encoded[len(encoded)-1] == ']' {
		if err := json.Unmarshal(encoded, &impacted); err != nil {
			return nil, err
		}
		for _, resource := range impacted {
			if resource.Operation != Patch && resource.Operation != Create {
				return nil, fmt.Errorf("unsupported operation: %q", resource.Operation)
			}
		}
	} else {
		returned := map[string]any{}
		if err := json.Unmarshal(encoded, &returned); err != nil {
			return nil, err
		}
		impacted = []ImpactedResource{{Object: returned, Operation: Patch}}
	}
	for i := range impacted {
		if impacted[i].Operation == Patch {
			impacted[i].Object = cleanReturnedObj(impacted[i].Object, normalized(obj))
		}
	}
	return impacted, nil
}

// cleanReturnedObj undoes gopher-json's encoding of an empty table as `[]` where the
// object had a map (Argo CD's function of the same name).
func cleanReturnedObj(returned, original map[string]any) map[string]any {
	for key, oldValue := range original {
		newValue, ok := returned[key]
		if !ok {
			continue
		}
		switch changed := newValue.(type) {
		case map[string]any:
			if old, ok := oldValue.(map[string]any); ok {
				returned[key] = cleanReturnedObj(changed, old)
			}
		case []any:
			switch old := oldValue.(type) {
			case map[string]any:
				if len(changed) == 0 {
					returned[key] = map[string]any{}
				}
			case []any:
				returned[key] = cleanReturnedArray(changed, old)
			}
		}
	}
	return returned
}

func cleanReturnedArray(returned, original []any) []any {
	for i := range returned {
		if i >= len(original) {
			break
		}
		switch changed := returned[i].(type) {
		case map[string]any:
			if old, ok := original[i].(map[string]any); ok {
				returned[i] = cleanReturnedObj(changed, old)
			}
		case []any:
			if old, ok := original[i].([]any); ok {
				returned[i] = cleanReturnedArray(changed, old)
			}
		}
	}
	return returned
}

// normalized is obj as JSON sees it (numbers as float64), the form an action's output has.
func normalized(obj map[string]any) map[string]any {
	raw, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return out
}

// MergePatch is the RFC 7386 JSON merge patch that turns live into changed: what Argo CD
// sends to the API server (jsonpatch.CreateMergePatch) after a patch action. nil values
// delete; an empty map means nothing changed.
func MergePatch(live, changed map[string]any) map[string]any {
	live, changed = normalized(live), normalized(changed)
	return mergeDiff(live, changed)
}

func mergeDiff(live, changed map[string]any) map[string]any {
	patch := map[string]any{}
	for key, newValue := range changed {
		oldValue, existed := live[key]
		if !existed {
			patch[key] = newValue
			continue
		}
		oldMap, oldIsMap := oldValue.(map[string]any)
		newMap, newIsMap := newValue.(map[string]any)
		if oldIsMap && newIsMap {
			if nested := mergeDiff(oldMap, newMap); len(nested) > 0 {
				patch[key] = nested
			}
			continue
		}
		if !reflect.DeepEqual(oldValue, newValue) {
			patch[key] = newValue
		}
	}
	for key := range live {
		if _, kept := changed[key]; !kept {
			patch[key] = nil
		}
	}
	return patch
}
