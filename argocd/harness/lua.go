// Package harness runs Argo CD health scripts the way Argo CD does.
//
// It mirrors argo-cd's util/lua (VM.runLua and VM.ExecuteHealthLua): gopher-lua (Lua
// 5.1), the object as the global `obj` (converted like Argo CD's decodeValue), a
// one-second deadline, the returned table encoded with layeh.com/gopher-json and decoded
// into {status, message}, and an invalid status code turned into Unknown. Two library
// sets exist in Argo CD and both are reproduced:
//
//   - OpenLibs: every standard library, what Argo CD's own health_test.go uses and what
//     built-in scripts (resource_customizations/) get;
//   - Restricted: package, base and table only (plus a `require`-able os with time/date),
//     what a script from argocd-cm gets unless
//     resource.customizations.useOpenLibs.<group_kind> is set. No `string`, no `math`,
//     no global `os`.
package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// HealthStatus is gitops-engine's health.HealthStatus as Argo CD compares it.
type HealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

const invalidHealthStatus = "Lua returned an invalid health status"

// Libraries selects which Lua libraries a script sees.
type Libraries int

const (
	// OpenLibs is Argo CD's test setting and the built-in scripts' setting.
	OpenLibs Libraries = iota
	// Restricted is what an argocd-cm health script gets by default.
	Restricted
)

func (l Libraries) String() string {
	if l == OpenLibs {
		return "open-libs"
	}
	return "restricted-libs"
}

var validStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

// ExecuteHealthLua runs script against obj and returns the health it reports.
func ExecuteHealthLua(obj map[string]any, script string, libs Libraries) (*HealthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: libs != OpenLibs})
	defer l.Close()
	for _, pair := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.open), NRet: 0, Protect: true}, lua.LString(pair.name)); err != nil {
			return nil, fmt.Errorf("opening %s: %w", pair.name, err)
		}
	}
	if libs == Restricted {
		// Argo CD preloads its safe os (time, date) for `require("os")`; it is no global.
		l.PreloadModule(lua.OsLibName, safeOsLoader)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	status := &HealthStatus{}
	if err := json.Unmarshal(encoded, status); err != nil {
		return nil, err
	}
	if !validStatus[status.Status] {
		return &HealthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return status, nil
}

// decodeValue is Argo CD's conversion of an unstructured object into Lua values.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []any:
		arr := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(converted))
		for key, item := range converted {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func safeOsLoader(l *lua.LState) int {
	mod := l.SetFuncs(l.NewTable(), map[string]lua.LGFunction{
		"time": func(l *lua.LState) int {
			l.Push(lua.LNumber(time.Now().Unix()))
			return 1
		},
		"date": func(l *lua.LState) int {
			l.Push(lua.LString(time.Now().UTC().Format(time.RFC3339)))
			return 1
		},
	})
	l.Push(mod)
	return 1
}
