// Command argocd-lua runs the scripts of an argocd-cm file on one object, as Argo CD would,
// and prints the result as JSON: what the e2e tests apply to live objects.
//
//	argocd-lua [-cm argocd-cm.yaml] health          < object.json   {"status": ..., "message": ...}
//	argocd-lua [-cm argocd-cm.yaml] discovery       < object.json   [{"name": ..., "disabled": ...}, ...]
//	argocd-lua [-cm argocd-cm.yaml] action <name>   < object.json   the JSON merge patch Argo CD sends
//
// Scripts run with the restricted libraries Argo CD gives argocd-cm scripts (and every
// action), on the wall clock.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"perennial.dev/argocd/harness"
)

func main() {
	cm := flag.String("cm", "../argocd-cm.yaml", "the argocd-cm ConfigMap file")
	flag.Parse()
	result, err := run(*cm, flag.Args(), os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
}

func run(cmPath string, args []string, input io.Reader) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("usage: argocd-lua [-cm FILE] health | discovery | action NAME < object.json")
	}
	var obj map[string]any
	if err := json.NewDecoder(input).Decode(&obj); err != nil {
		return nil, fmt.Errorf("reading the object: %w", err)
	}
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group, _, _ := strings.Cut(apiVersion, "/")
	data, err := harness.ReadConfigMap(cmPath)
	if err != nil {
		return nil, err
	}
	lookup := func(key string) (string, error) {
		value, ok := data[key]
		if !ok {
			return "", fmt.Errorf("%s has no %s", cmPath, key)
		}
		return value, nil
	}
	switch {
	case args[0] == "health" && len(args) == 1:
		script, err := lookup(harness.HealthKey(group, kind))
		if err != nil {
			return nil, err
		}
		return harness.ExecuteHealthLua(obj, script, harness.Restricted)
	case args[0] == "discovery" && len(args) == 1:
		value, err := lookup(harness.ActionsKey(group, kind))
		if err != nil {
			return nil, err
		}
		scripts, err := harness.ParseActions(value)
		if err != nil {
			return nil, err
		}
		return harness.ExecuteResourceActionDiscovery(obj, scripts.Discovery, harness.Restricted)
	case args[0] == "action" && len(args) == 2:
		value, err := lookup(harness.ActionsKey(group, kind))
		if err != nil {
			return nil, err
		}
		scripts, err := harness.ParseActions(value)
		if err != nil {
			return nil, err
		}
		script, ok := scripts.Actions[args[1]]
		if !ok {
			return nil, fmt.Errorf("no action %q for %s/%s", args[1], group, kind)
		}
		impacted, err := harness.ExecuteResourceAction(obj, script, harness.Restricted)
		if err != nil {
			return nil, err
		}
		if len(impacted) != 1 || impacted[0].Operation != harness.Patch {
			return nil, fmt.Errorf("action %s returned %d objects; this tool applies one patch of the source", args[1], len(impacted))
		}
		return harness.MergePatch(obj, impacted[0].Object), nil
	}
	return nil, fmt.Errorf("unknown command %q", strings.Join(args, " "))
}
