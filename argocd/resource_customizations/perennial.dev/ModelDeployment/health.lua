-- Argo CD health check for perennial.dev ModelDeployment: a served model and its
-- training loop. Lua 5.1 as Argo CD runs it (gopher-lua), using no library beyond base
-- and table, so it also works from argocd-cm without resource.customizations.useOpenLibs.
--   no status, or status.observedGeneration < metadata.generation -> Progressing
--   phase Failed (nothing serves, the last run failed)            -> Degraded
--   Degraded condition True (rolled back, stuck, unknown pin)     -> Degraded
--     a canary its analysis aborted (AnalysisFailed, AnalysisNoData) stays Degraded
--     until the next version serves (Degraded False, RolloutSucceeded)
--   a canary in progress (status.rollout.strategy Canary)          -> Progressing
--     the message names the version, the step and its weight
--   a rollout in progress (phase Rolling)                          -> Progressing
--   Ready True                                   -> Healthy, or Suspended with spec.suspend
--   nothing serving yet: training -> Progressing; a Manual Candidate waiting for
--   spec.pinnedVersion -> Suspended; spec.suspend (no automatic training) -> Suspended
--   a serving version whose Deployment is not available            -> Progressing

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

local function isTrue(condition)
  return condition ~= nil and condition.status == "True"
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

local function explain(condition, fallback)
  if condition ~= nil and condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason .. ": " .. describe(condition, fallback)
  end
  return describe(condition, fallback)
end

-- A canary in progress, in words that stay the same for the whole step: where it is, from
-- status.rollout (the Progressing condition's message for a step in its pause ends with
-- the moment the pause ends). Holding for want of analysis data (AnalysisInconclusive)
-- and promoting (Promoting): the condition's own message, which names the metrics.
local function canaryMessage(spec, rollout, progressing)
  if progressing == nil or progressing.reason ~= "CanaryStep" or rollout.stage ~= "Step"
      or rollout.step == nil or rollout.steps == nil or rollout.weight == nil then
    return describe(progressing, "canary of version " .. tostring(rollout.version))
  end
  local where = "version " .. tostring(rollout.version) .. ": canary step " .. rollout.step .. "/" .. rollout.steps
    .. " at " .. rollout.weight .. "%"
  local shares = (rollout.canaryReplicas or "?") .. " canary, " .. (rollout.stableReplicas or "?") .. " stable replica(s)"
  if rollout.pauseStartedAt == nil then
    return where .. ": waiting for " .. shares .. " to be available"
  end
  local steps = spec.rollout ~= nil and spec.rollout.steps or {}
  local step = steps[rollout.step]
  if step ~= nil and step.pause ~= nil then
    return where .. " (" .. shares .. "), paused for " .. step.pause
  end
  return where .. " (" .. shares .. "), paused"
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

local versions = status.versions or {}
local latest = versions[#versions]
if status.phase == "Failed" then
  local message = "nothing serves and the last training failed"
  if latest ~= nil then
    message = message .. ": version " .. latest.version .. " " .. (latest.state or "Failed")
    if latest.decision ~= nil and latest.decision.reason ~= nil then
      message = message .. " (" .. latest.decision.reason .. ")"
    end
  end
  return {status = "Degraded", message = message}
end

local degraded = findCondition(status, "Degraded")
if isTrue(degraded) then
  return {status = "Degraded", message = explain(degraded, "Degraded")}
end

local progressing = findCondition(status, "Progressing")
local rollout = status.rollout
if rollout ~= nil and rollout.strategy == "Canary" then
  return {status = "Progressing", message = canaryMessage(obj.spec or {}, rollout, progressing)}
end
if status.phase == "Rolling" or isTrue(progressing) then
  return {status = "Progressing", message = describe(progressing, "rolling out")}
end

-- spec.suspend stops automatic retrains (Initial, SpecChange, Drift, Schedule); what
-- serves keeps serving and a manual retrain request still runs.
local suspended = obj.spec ~= nil and obj.spec.suspend == true
local paused = "spec.suspend is true: automatic retrains are paused; "

local ready = findCondition(status, "Ready")
if isTrue(ready) then
  if suspended then
    return {status = "Suspended", message = paused .. describe(ready, "serving")}
  end
  return {status = "Healthy", message = describe(ready, "serving")}
end

if status.servingVersion == nil or status.servingVersion == "" then
  local training = findCondition(status, "Training")
  if isTrue(training) then
    return {status = "Progressing", message = "no version serves yet: " .. describe(training, "training")}
  end
  for i = #versions, 1, -1 do
    if versions[i].state == "Candidate" then
      return {
        status = "Suspended",
        message = "version " .. versions[i].version .. " is a Candidate: set spec.pinnedVersion to serve it",
      }
    end
  end
  if suspended then
    return {status = "Suspended", message = paused .. describe(ready, "no version serves yet")}
  end
  return {status = "Progressing", message = explain(ready, "no version serves yet")}
end
return {status = "Progressing", message = explain(ready, "waiting for the serving Deployment")}
