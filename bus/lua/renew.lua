-- Renew the leases in KEYS that still hold our token (ARGV[1]) for ARGV[2] ms.
-- Returns one 1/0 per key: 0 means the lease was lost.
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call("GET", key) == ARGV[1] then
    redis.call("PEXPIRE", key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
