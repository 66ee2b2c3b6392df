// Package harness runs Argo CD health checks and resource actions the way Argo CD does.
//
// It mirrors argo-cd's util/lua (VM.runLua, ExecuteHealthLua, ExecuteResourceActionDiscovery,
// ExecuteResourceAction): gopher-lua (Lua 5.1), the object as the global `obj` (converted
// like Argo CD's decodeValue), a one-second deadline, the returned table encoded with
// layeh.com/gopher-json and decoded from JSON. Two library sets exist in Argo CD and both
// are reproduced:
//
//   - OpenLibs: every standard library, what Argo CD's own tests of health checks and of
//     action discovery use, and what built-in health checks (resource_customizations/) get;
//   - Restricted: package, base and table only, plus Argo CD's "safe" os (time and date)
//     for `local os = require("os")`: what a health check from argocd-cm gets unless
//     resource.customizations.useOpenLibs.<group_kind> is set, and what every action and
//     discovery script gets when the API server runs it. No `string`, no `math`, no
//     global `os`.
package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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
	// OpenLibs is Argo CD's test setting and the built-in health checks' setting.
	OpenLibs Libraries = iota
	// Restricted is what an argocd-cm health script, and every action script, gets.
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

// Clock is what the safe os library reads the time from. Argo CD reads the wall clock;
// the action tests set a fixed instant so that an action's output can be compared exactly.
var Clock = time.Now

// runLua is Argo CD's VM.runLua: a fresh state with the libraries, `obj`, and the script
// run under a one-second deadline. The caller closes the returned state.
func runLua(obj map[string]any, script string, libs Libraries) (*lua.LState, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: libs != OpenLibs})
	for _, pair := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		// Argo CD opens its safe os with RegisterModule(TabLibName, ...): the table
		// library exists already, so this adds nothing, and no global `os` appears.
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.open), NRet: 0, Protect: true}, lua.LString(pair.name)); err != nil {
			l.Close()
			return nil, fmt.Errorf("opening %s: %w", pair.name, err)
		}
	}
	// `local os = require("os")` gets the safe os (with open libraries, the full one
	// already in package.loaded wins, as in Argo CD).
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		l.Close()
		return nil, err
	}
	l.RemoveContext()
	return l, nil
}

// returnedJSON is the script's return value encoded as Argo CD encodes it, or an error
// when it is not a table.
func returnedJSON(l *lua.LState) ([]byte, error) {
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	return luajson.Encode(returned)
}

// runForJSON runs script against obj and returns the table it returned, as JSON.
func runForJSON(obj map[string]any, script string, libs Libraries) ([]byte, error) {
	l, err := runLua(obj, script, libs)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return returnedJSON(l)
}

// ExecuteHealthLua runs script against obj and returns the health it reports.
func ExecuteHealthLua(obj map[string]any, script string, libs Libraries) (*HealthStatus, error) {
	encoded, err := runForJSON(obj, script, libs)
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

// ---------------------------------------------------------------- Argo CD's safe os

var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

// osTime: os.time() is now; os.time{year=, month=, day=, hour=, min=, sec=} that instant
// in local time (hour defaults to 12), as in Lua.
func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(Clock().Unix()))
		return 1
	}
	tbl := l.CheckTable(1)
	field := func(key string, fallback int) int {
		if n, ok := tbl.RawGetString(key).(lua.LNumber); ok {
			return int(n)
		}
		return fallback
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(t.Unix()))
	return 1
}

// osDate: os.date([format [, time]]). A leading "!" means UTC; "*t" returns a table;
// otherwise the strftime flags Argo CD knows are expanded. As in Argo CD, an explicit
// time argument is taken in local time.
func osDate(l *lua.LState) int {
	t := Clock()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			t = t.UTC()
			format = strings.TrimLeft(format, "!")
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
		if strings.HasPrefix(format, "*t") {
			ret := l.NewTable()
			for key, value := range map[string]int{
				"year": t.Year(), "month": int(t.Month()), "day": t.Day(), "hour": t.Hour(),
				"min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0,
			} {
				ret.RawSetString(key, lua.LNumber(value))
			}
			ret.RawSetString("isdst", lua.LFalse)
			l.Push(ret)
			return 1
		}
	}
	l.Push(lua.LString(strftime(t, format)))
	return 1
}

// The strftime flags Argo CD's safe os supports, as Go layouts.
var strftimeLayouts = map[byte]string{
	'a': "mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

// strftime expands %-flags; "%%" is a literal "%", an unknown flag stays as written.
func strftime(t time.Time, format string) string {
	var out strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i == len(format)-1 {
			out.WriteByte(c)
			continue
		}
		i++
		flag := format[i]
		switch layout, known := strftimeLayouts[flag]; {
		case flag == '%':
			out.WriteByte('%')
		case known:
			out.WriteString(t.Format(layout))
		case flag == 'w':
			out.WriteString(strconv.Itoa(int(t.Weekday())))
		default:
			out.WriteByte('%')
			out.WriteByte(flag)
		}
	}
	return out.String()
}
