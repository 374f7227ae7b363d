-- Argo CD health check for sundial.dev/ScheduledJob (Lua 5.1, as Argo CD runs it).
--
--   Degraded     Ready=False for this generation with a reason someone has to act on (fix
--                the spec, or deploy workers offering the target): InvalidSpec,
--                InvalidSchedule, UnknownTimeZone, UnknownTarget
--   Suspended    spec.suspend is true (and the spec is not broken)
--   Progressing  no status yet, a generation the operator has not observed yet,
--                Ready=False for another reason (BackendUnavailable), or Ready=Unknown
--   Healthy      Ready=True for the current generation
hs = {}

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end

-- A condition about an older generation says nothing about the spec in Git now.
local current = ready ~= nil
if current and generation ~= nil then
  local observed = ready.observedGeneration
  if observed == nil and obj.status ~= nil then
    observed = obj.status.observedGeneration
  end
  current = observed ~= nil and observed >= generation
end

local spec_errors = {
  InvalidSpec = true,
  InvalidSchedule = true,
  UnknownTimeZone = true,
  UnknownTarget = true,
}

local function message_of(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

if current and ready.status == "False" and spec_errors[ready.reason] then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. message_of(ready, "the operator refused the spec")
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no runs until it is false"
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Sundial operator to report Ready"
  return hs
end

if not current then
  hs.status = "Progressing"
  hs.message = "waiting for the Sundial operator to observe generation " .. tostring(generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "scheduled")
  return hs
end

hs.status = "Progressing"
hs.message = tostring(ready.reason) .. ": " .. message_of(ready, "not ready yet")
return hs
