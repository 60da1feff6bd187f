"""The Lua script that takes a batch of messages and records them as unacknowledged, atomically."""

from __future__ import annotations

# KEYS: unacked hash, unacked index zset, this consumer's held set, the set of live consumers,
#       then the queue lists in the order they are served (Redis priority 0 first, as kombu's
#       BRPOP serves them).
# ARGV: how many messages at most, the time to record as delivery time, and this consumer's id
#       when the take must only happen while it is registered ("" for no such check).
# Returns a flat list: list index (1-based among the queue lists), delivery tag ("" when the
# envelope cannot be read), raw envelope; repeated.
#
# Taking and recording happen in one script, so a worker that dies (or loses its connection)
# at any moment leaves each message either in its list or in the unacked hash: never nowhere.
# The unacked hash entry is kombu's `[envelope, exchange, routing_key]`, so Celery's restore
# sweeps understand what we hold, and ours understand theirs.
#
# The registration check is for takes queued behind a blocking wait (see Waits): such a take
# may run long after it was sent, and once its consumer has left (closed, or reaped as dead)
# it must take nothing, or what it took would sit in a held set nobody gives back.
FETCH = """
local want = tonumber(ARGV[1])
local now = ARGV[2]
if ARGV[3] ~= '' and redis.call('SISMEMBER', KEYS[4], ARGV[3]) == 0 then
  return {}
end
local out = {}
local hash_args = {}
local index_args = {}
local held_args = {}
for i = 5, #KEYS do
  if want <= 0 then break end
  local items = redis.call('RPOP', KEYS[i], want)
  if items then
    for _, raw in ipairs(items) do
      local ok, msg = pcall(cjson.decode, raw)
      local tag, ex, rk = nil, '', ''
      if ok and type(msg) == 'table' and type(msg.properties) == 'table' then
        tag = msg.properties.delivery_tag
        local info = msg.properties.delivery_info
        if type(info) == 'table' then
          if type(info.exchange) == 'string' then ex = info.exchange end
          if type(info.routing_key) == 'string' then rk = info.routing_key end
        end
      end
      if type(tag) == 'string' and tag ~= '' then
        hash_args[#hash_args + 1] = tag
        local where = cjson.encode(ex) .. ', ' .. cjson.encode(rk)
        hash_args[#hash_args + 1] = '[' .. raw .. ', ' .. where .. ']'
        index_args[#index_args + 1] = now
        index_args[#index_args + 1] = tag
        held_args[#held_args + 1] = tag
      else
        tag = ''
      end
      out[#out + 1] = i - 4
      out[#out + 1] = tag
      out[#out + 1] = raw
      want = want - 1
    end
  end
end
if #hash_args > 0 then
  redis.call('HSET', KEYS[1], unpack(hash_args))
  redis.call('ZADD', KEYS[2], unpack(index_args))
  redis.call('SADD', KEYS[3], unpack(held_args))
end
return out
"""
