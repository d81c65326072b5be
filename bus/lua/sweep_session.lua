-- Sweep one expired session for one stage (bus/retention.py), atomically and only while the
-- session still has its status: once another worker has forgotten it, nothing of it is
-- written again (a sweep that read the registry before that would otherwise set its fin
-- fields anew, and they would stay for ever).
-- KEYS[1] the room's progress hash, KEYS[2] status, KEYS[3] alive (of the room), KEYS[4..]
-- this stage's input streams of the session, deleted.
-- ARGV[1] session id, ARGV[2] "1" to forget the session as well, ARGV[3] n, the number of
-- fin fields that follow (ARGV[4..3+n], set to mark the streams finished), then this stage's
-- other fields of the session (dropped).
-- Forgetting removes the session's status and alive entries and every stage's progress
-- fields of it; the caller then removes its record from the sessions hash (read-only to
-- workers but for HDEL, so not given to a script; a session without a status reads as
-- ended, and is not swept again).
-- Returns 1, or 0 when the session was forgotten already.
local progress, sid = KEYS[1], ARGV[1]
if redis.call("HEXISTS", KEYS[2], sid) == 0 then return 0 end

local function hdel_all(key, names)
  for i = 1, #names, 1000 do
    redis.call("HDEL", key, unpack(names, i, math.min(i + 999, #names)))
  end
end

-- the session a progress field belongs to: wm|stage|family:session[:lang],
-- fin|... the same, out|stage|<output key>|session (as ProgressField.parse reads them)
local function session_of(name)
  local parts = {}
  for p in string.gmatch(name, "[^|]+") do parts[#parts + 1] = p end
  if #parts == 3 and (parts[1] == "wm" or parts[1] == "fin") then
    local where = {}
    for p in string.gmatch(parts[3], "[^:]+") do where[#where + 1] = p end
    if #where == 2 or #where == 3 then return where[2] end
  elseif #parts == 4 and parts[1] == "out" then
    return parts[4]
  end
  return nil
end

for i = 4, #KEYS do redis.call("DEL", KEYS[i]) end
local n = tonumber(ARGV[3])
local drop = {}
for i = 4 + n, #ARGV do drop[#drop + 1] = ARGV[i] end
hdel_all(progress, drop)
if ARGV[2] == "1" then
  for k = 2, 3 do redis.call("HDEL", KEYS[k], sid) end
  local all, gone = redis.call("HGETALL", progress), {}
  for i = 1, #all, 2 do
    if session_of(all[i]) == sid then gone[#gone + 1] = all[i] end
  end
  hdel_all(progress, gone)
else
  for i = 4, 3 + n do redis.call("HSET", progress, ARGV[i], "1") end
end
return 1
