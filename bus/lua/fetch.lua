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
-- The streams whose lease holds are read by one XREADGROUP (per 1000 streams).
local out, streams, starts = {}, {}, {}
for i = 1, #KEYS, 2 do
  local lease, stream = KEYS[i], KEYS[i + 1]
  if redis.call("GET", lease) ~= ARGV[2] then
    table.insert(out, {stream, "LOST"})
  else
    table.insert(streams, stream)
    table.insert(starts, ARGV[3 + (i + 1) / 2] or ">")
  end
end
for first = 1, #streams, 1000 do
  local last = math.min(first + 999, #streams)
  local cmd = {"XREADGROUP", "GROUP", ARGV[1], ARGV[2], "COUNT", ARGV[3], "STREAMS"}
  for j = first, last do table.insert(cmd, streams[j]) end
  for j = first, last do table.insert(cmd, starts[j]) end
  local r = redis.call(unpack(cmd))
  if r then
    for _, s in ipairs(r) do
      if #s[2] > 0 then table.insert(out, {s[1], s[2]}) end
    end
  end
end
return out
