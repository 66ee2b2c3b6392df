-- Argo CD resource actions for perennial.dev ModelDeployment. Lua 5.1 as Argo CD runs it
-- (gopher-lua), using no library beyond base and table, as the API server allows.
--   retrain  ask for a retrain now (the perennial.dev/retrain-request annotation); runs
--            even while suspended, after a training in progress finishes
--   pause    spec.suspend: true, no automatic retrains (offered while not suspended)
--   resume   spec.suspend: false (offered while suspended)
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true

actions["retrain"] = {["displayName"] = "Retrain now", ["iconClass"] = "fa fa-fw fa-redo"}
actions["pause"] = {
  ["disabled"] = suspended,
  ["displayName"] = "Pause automatic retrains",
  ["iconClass"] = "fa fa-fw fa-pause",
}
actions["resume"] = {
  ["disabled"] = not suspended,
  ["displayName"] = "Resume automatic retrains",
  ["iconClass"] = "fa fa-fw fa-play",
}
return actions
