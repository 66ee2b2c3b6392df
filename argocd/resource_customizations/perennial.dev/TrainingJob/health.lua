-- Argo CD health check for perennial.dev TrainingJob: one training run.
-- Lua 5.1 as Argo CD runs it (gopher-lua), using no library beyond base and table, so it
-- also works from argocd-cm without resource.customizations.useOpenLibs.
--   no status, or status.observedGeneration < metadata.generation -> Progressing
--   Pending, Running -> Progressing; a Job of the same name it does not own -> Degraded
--   Succeeded (trained and validated) -> Healthy
--   Failed, Rejected -> Degraded, with the Succeeded condition's message

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
-- newer one recorded on a condition (metav1.Condition.observedGeneration).
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
if observed < 0 or status.phase == nil then
  return {status = "Progressing", message = "Waiting for the operator: no status yet"}
end
if observed < generation then
  return {
    status = "Progressing",
    message = "Waiting for the operator: generation " .. generation .. " not observed yet (status is of generation " .. observed .. ")",
  }
end

local phase = status.phase
local succeeded = findCondition(status, "Succeeded")
if phase == "Succeeded" then
  return {status = "Healthy", message = describe(succeeded, "trained and validated")}
end
if phase == "Failed" or phase == "Rejected" then
  return {status = "Degraded", message = describe(succeeded, phase)}
end
if phase == "Pending" or phase == "Running" then
  if succeeded ~= nil and succeeded.reason == "JobConflict" then
    return {status = "Degraded", message = describe(succeeded, "JobConflict")}
  end
  return {status = "Progressing", message = phase .. ": " .. describe(findCondition(status, "Running"), "the run has not finished")}
end
return {status = "Unknown", message = "unknown phase " .. phase}
