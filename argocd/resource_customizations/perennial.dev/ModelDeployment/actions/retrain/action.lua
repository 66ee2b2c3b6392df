-- Ask for a retrain: a new value of the perennial.dev/retrain-request annotation is a
-- Manual trigger (it bypasses the cooldown, the circuit breaker and spec.suspend; it waits
-- for a training in progress). The value names Argo CD and the UTC time of the request,
-- e.g. argocd-2026-11-26T12:00:00Z; the operator records it as the run's trigger source.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["perennial.dev/retrain-request"] = "argocd-" .. os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
