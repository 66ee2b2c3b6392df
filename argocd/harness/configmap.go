package harness

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// ActionScripts is one kind's resource actions as argocd-cm gives them to Argo CD
// (v1alpha1.ResourceActions): a discovery script and a script per action.
type ActionScripts struct {
	Discovery string
	Actions   map[string]string
}

// ReadConfigMap returns the data of an argocd-cm ConfigMap file.
func ReadConfigMap(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Kind     string            `json:"kind"`
		Metadata map[string]any    `json:"metadata"`
		Data     map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata["name"] != "argocd-cm" {
		return nil, fmt.Errorf("%s is not the argocd-cm ConfigMap", path)
	}
	return cm.Data, nil
}

// HealthKey and ActionsKey are the argocd-cm keys Argo CD reads for group and kind.
func HealthKey(group, kind string) string {
	return "resource.customizations.health." + group + "_" + kind
}
func ActionsKey(group, kind string) string {
	return "resource.customizations.actions." + group + "_" + kind
}

// ParseActions reads the value of a resource.customizations.actions key, strictly: a
// misspelt field would be ignored by Argo CD and the action silently missing.
func ParseActions(value string) (ActionScripts, error) {
	var parsed struct {
		Discovery   string `json:"discovery.lua"`
		Definitions []struct {
			Name   string `json:"name"`
			Action string `json:"action.lua"`
		} `json:"definitions"`
		MergeBuiltinActions bool `json:"mergeBuiltinActions"`
	}
	if err := yaml.UnmarshalStrict([]byte(value), &parsed); err != nil {
		return ActionScripts{}, err
	}
	scripts := ActionScripts{Discovery: parsed.Discovery, Actions: map[string]string{}}
	for _, definition := range parsed.Definitions {
		if _, twice := scripts.Actions[definition.Name]; twice {
			return ActionScripts{}, fmt.Errorf("action %s is defined twice", definition.Name)
		}
		scripts.Actions[definition.Name] = definition.Action
	}
	return scripts, nil
}
