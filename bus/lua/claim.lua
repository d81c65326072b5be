-- Take over every pending entry of a group's stream (a dead or departed
-- owner's in-flight work) for consumer ARGV[2], walking the PEL with the
-- XAUTOCLAIM cursor.  JUSTID: no payload is sent and delivery counts stay as
-- they were, so they still count the real delivery attempts.
-- Redis 7 answers {cursor, ids, deleted ids} and drops deleted entries from
-- the PEL itself; 6.2 answers {cursor, ids} and keeps them (the reader then
-- sees them with no fields and acknowledges them).  Returns {claimed, deleted}.
local cursor = "0-0"
local claimed, deleted, rounds = 0, 0, 0
repeat
  local res = redis.call("XAUTOCLAIM", KEYS[1], ARGV[1], ARGV[2], 0, cursor, "COUNT", 500, "JUSTID")
  cursor = res[1]
  claimed = claimed + #res[2]
  if res[3] then deleted = deleted + #res[3] end
  rounds = rounds + 1
until cursor == "0-0" or rounds >= 10000
return {claimed, deleted}
