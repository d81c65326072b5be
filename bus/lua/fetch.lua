-- Fenced read: for each (lease, stream) pair in KEYS, read entries for
-- consumer ARGV[2] of group ARGV[1] (COUNT ARGV[3]) only while the lease
-- still holds our token.  A worker whose lease expired can then never take
-- entries that the new owner would not see: the new owner claims all that
-- was read before it acquired the lease.
-- ARGV[3 + j] is where the j-th stream is read from: ">" for new entries, or
-- an id to read again this consumer's own pending entries after it (when the
-- reply of an earlier read was lost, its entries are pending but were never
-- seen).  Missing: ">".
-- Returns {stream, entries} per stream with data and {stream, "LOST"} per
-- stream whose lease is gone.
local out = {}
for i = 1, #KEYS, 2 do
  local lease, stream = KEYS[i], KEYS[i + 1]
  if redis.call("GET", lease) ~= ARGV[2] then
    table.insert(out, {stream, "LOST"})
  else
    local start = ARGV[3 + (i + 1) / 2] or ">"
    local r = redis.call("XREADGROUP", "GROUP", ARGV[1], ARGV[2], "COUNT", ARGV[3],
                         "STREAMS", stream, start)
    if r and r[1] and #r[1][2] > 0 then table.insert(out, {stream, r[1][2]}) end
  end
end
return out
