-- End a session whose capture agent stopped sending heartbeats.
-- KEYS[1] status hash, KEYS[2] alive hash, KEYS[3] the session's audio stream,
-- KEYS[4] the bell of the room's audio streams (rung: workers wake on it).
-- ARGV[1] session id, ARGV[2] cutoff ms, then the fields of the end marker.
if redis.call("HGET", KEYS[1], ARGV[1]) ~= "active" then return 0 end
local seen = tonumber(redis.call("HGET", KEYS[2], ARGV[1]) or "0")
if seen >= tonumber(ARGV[2]) then return 0 end
redis.call("HSET", KEYS[1], ARGV[1], "ended")
local cmd = {"XADD", KEYS[3], "*"}
for j = 3, #ARGV do table.insert(cmd, ARGV[j]) end
redis.call(unpack(cmd))
redis.call("XADD", KEYS[4], "MAXLEN", "~", "1000", "*", "keys", KEYS[3])
return 1
