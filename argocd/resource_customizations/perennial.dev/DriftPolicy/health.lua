-- Argo CD health check for perennial.dev DriftPolicy: when to retrain a ModelDeployment.
-- Lua 5.1 as Argo CD runs it (gopher-lua), using no library beyond base and table, so it
-- also works from argocd-cm without resource.customizations.useOpenLibs.
--   no status, or status.observedGeneration < metadata.generation -> Progressing
--   spec.suspend                                                  -> Suspended
--   Ready False (TargetNotFound, PrometheusUnreachable, QueryError) -> Degraded
--   otherwise Healthy, drifting or not: a policy that detects drift works as intended

local function findCondition(status, conditionType)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function describe(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition ~= nil and condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

-- The newest generation the operator has reconciled: status.observedGeneration, or a
-- newer one recorded on a condition (metav1.Condition.observedGeneration). A suspended
-- policy is not evaluated, and its Drifting condition is what records that the operator
-- saw spec.suspend.
local function observedGeneration(status)
  local observed = -1
  if type(status.observedGeneration) == "number" then
    observed = status.observedGeneration
  end
  for _, condition in ipairs(status.conditions or {}) do
    if type(condition.observedGeneration) == "number" and condition.observedGeneration > observed then
      observed = condition.observedGeneration
    end
  end
  return observed
end

local status = obj.status or {}
local generation = obj.metadata.generation or 0
local observed = observedGeneration(status)
if observed < 0 then
  return {status = "Progressing", message = "Waiting for the operator: no status yet"}
end
if observed < generation then
  return {
    status = "Progressing",
    message = "Waiting for the operator: generation " .. generation .. " not observed yet (status is of generation " .. observed .. ")",
  }
end

local drifting = findCondition(status, "Drifting")
if obj.spec ~= nil and obj.spec.suspend == true then
  return {status = "Suspended", message = describe(drifting, "spec.suspend is true: not evaluating")}
end

local ready = findCondition(status, "Ready")
if ready == nil then
  return {status = "Progressing", message = "Waiting for the first evaluation"}
end
if ready.status ~= "True" then
  return {status = "Degraded", message = (ready.reason or "NotReady") .. ": " .. describe(ready, "not ready")}
end
if drifting ~= nil and drifting.status == "True" then
  return {status = "Healthy", message = "Drifting: " .. describe(drifting, "metrics breached")}
end
return {status = "Healthy", message = describe(ready, "evaluated") .. "; " .. describe(drifting, "no sustained breach")}
