package limit

import "github.com/infura-gateway/infura-gateway/gateway/redisconn"

// leaseScript is the only code that changes limit state in Redis. One script with an
// operation in ARGV[1] so a shard sends any mix of leases in one pipelined round trip.
// Time is Redis's own (TIME), so the replicas' clocks never matter; ARGV[2] is an offset
// in milliseconds added to it, 0 except in tests of the day rollover.
//
// b (token bucket)  KEYS: bucket hash. ARGV: rate/s, burst, want, debt.
//
//	Refills by elapsed time, subtracts debt (units a replica admitted on credit; the
//	bucket may go negative), grants min(want, floor(tokens)). Returns {grant, wait_ms}:
//	when less than wanted, how long until the rest should be there, capped at half the
//	time until the bucket is full so a waiting replica comes back before tokens are lost.
//
// q (daily quota)   KEYS: quota hash. ARGV: limit, want, debt, ret, ret_day.
//
//	Per UTC day of Redis's clock. ret units leased on day ret_day and never spent are
//	given back (ignored once that day is over). Returns {grant, ms_until_day_end,
//	used, day}.
//
// s (slots)         KEYS: slots hash, replicas zset. ARGV: replica, min, want, max, ttl_ms.
//
//	The hash holds each replica's reservation; the zset each replica's liveness deadline
//	(renewed here and by h). Reservations of replicas past their deadline are dropped,
//	so a crashed replica's slots expire on their own. Grants max(min, min(want, max -
//	others)): min is what the replica has in use and cannot take back. Returns {grant}.
//
// h (heartbeat)     KEYS: replicas zset. ARGV: replica, ttl_ms. Returns {1} when the
//
//	replica was still alive, {0} when its reservations may have been dropped.
//
// x (exit)          KEYS: replicas zset. ARGV: replica. Returns {removed}.
//
//	A replica shutting down cleanly leaves the zset: any reservation field of it still
//	in a slots hash is dead to the next s of every other replica, as a crashed one's
//	is after its deadline.
var leaseScript = redisconn.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local op = ARGV[1]
if op == 'b' then
  local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
  local want, debt = tonumber(ARGV[5]), tonumber(ARGV[6])
  local v = redis.call('HMGET', KEYS[1], 't', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then tokens = burst; ts = now end
  if now > ts then tokens = tokens + (now - ts) * rate / 1000; ts = now end
  if tokens > burst then tokens = burst end
  tokens = tokens - debt
  local grant = 0
  if want > 0 and tokens >= 1 then
    grant = math.min(want, math.floor(tokens))
    tokens = tokens - grant
  end
  local wait = 0
  if grant < want then
    wait = math.ceil(((want - grant) - tokens) * 1000 / rate)
    local full = math.ceil((burst - tokens) * 500 / rate)
    if full < wait then wait = full end
    if wait < 1 then wait = 1 end
  end
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(ts))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 60000)
  return {grant, wait}
elseif op == 'q' then
  local limit, want, debt = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local ret, retday = tonumber(ARGV[6]) or 0, tonumber(ARGV[7]) or -1
  local day = math.floor(now / 86400000)
  local v = redis.call('HMGET', KEYS[1], 'd', 'u')
  local used = 0
  if tonumber(v[1]) == day then used = tonumber(v[2]) or 0 end
  used = used + debt
  if ret > 0 and retday == day then
    used = used - ret
    if used < 0 then used = 0 end
  end
  local grant = 0
  if want > 0 and used < limit then grant = math.min(want, limit - used) end
  used = used + grant
  redis.call('HSET', KEYS[1], 'd', day, 'u', used)
  redis.call('PEXPIRE', KEYS[1], 2 * 86400000)
  return {grant, (day + 1) * 86400000 - now, used, day}
elseif op == 's' then
  local id, mn, want, max, ttl = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  redis.call('ZADD', KEYS[2], now + ttl, id)
  redis.call('PEXPIRE', KEYS[2], 86400000)
  local f = redis.call('HGETALL', KEYS[1])
  local others = 0
  for i = 1, #f, 2 do
    if f[i] ~= id then
      local exp = redis.call('ZSCORE', KEYS[2], f[i])
      if exp and tonumber(exp) >= now then
        others = others + tonumber(f[i + 1])
      else
        redis.call('HDEL', KEYS[1], f[i])
      end
    end
  end
  local grant = want
  if grant > max - others then grant = max - others end
  if grant < mn then grant = mn end
  if grant > 0 then
    redis.call('HSET', KEYS[1], id, grant)
    redis.call('PEXPIRE', KEYS[1], 86400000)
  else
    redis.call('HDEL', KEYS[1], id)
  end
  return {grant}
elseif op == 'h' then
  local id, ttl = ARGV[3], tonumber(ARGV[4])
  local exp = redis.call('ZSCORE', KEYS[1], id)
  local alive = 0
  if exp and tonumber(exp) >= now then alive = 1 end
  redis.call('ZADD', KEYS[1], now + ttl, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)
  redis.call('PEXPIRE', KEYS[1], 86400000)
  return {alive}
elseif op == 'x' then
  return {redis.call('ZREM', KEYS[1], ARGV[3])}
end
return redis.error_reply('unknown limit operation')
`)
