-- End a session whose capture agent stopped sending heartbeats.
-- KEYS[1] status hash, KEYS[2] alive hash, KEYS[3] the session's audio stream,
-- KEYS[4] the bell of the room's audio streams (rung: workers wake on it).
-- ARGV[1] session id, ARGV[2] cutoff ms (the caller's now minus the timeout, in Redis's time
-- as bus/clock.py measures it), ARGV[3] the timeout in ms, then the fields of the end marker.
-- The heartbeat (ms, written in Redis's time) is compared with Redis's own clock, TIME, minus
-- the timeout; the caller's cutoff only where TIME is refused (an ACL user without +time).
if redis.call("HGET", KEYS[1], ARGV[1]) ~= "active" then return 0 end
local seen = tonumber(redis.call("HGET", KEYS[2], ARGV[1]) or "0")
local cutoff = tonumber(ARGV[2])
local t = redis.pcall("TIME")
if type(t) == "table" and t[1] then
  cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
end
-- (a heartbeat that is no number, written by hand: not known to be stale, left alone)
if seen == nil or seen >= cutoff then return 0 end
redis.call("HSET", KEYS[1], ARGV[1], "ended")
local cmd = {"XADD", KEYS[3], "*"}
for j = 4, #ARGV do table.insert(cmd, ARGV[j]) end
redis.call(unpack(cmd))
redis.call("XADD", KEYS[4], "MAXLEN", "~", "1000", "*", "keys", KEYS[3])
return 1
