package filters

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/infura-gateway/infura-gateway/gateway/redisconn"
)

// redisStore keeps filters in Redis, for every replica. Keys share one hash tag per
// network (a cluster keeps them in one slot, so the scripts see them together):
//
//	{filters:<network>}:f:<id>       the state (JSON), expiring Timeout after its last poll
//	{filters:<network>}:t:<scope>    sorted set: the scope's filters by expiry (ms)
//	{filters:<network>}:t:anon48:<p> the same for an IPv6 /48's anonymous clients together
//	{filters:<network>}:all          sorted set: every filter by expiry
//	{filters:<network>}:size         hash: each filter's bytes; :bytes their sum
//
// Every key expires: a network without filter calls for Timeout leaves nothing.
type redisStore struct {
	cfg    Config
	svc    *Service
	conn   *redisconn.Conn
	prefix string
}

func newRedisStore(cfg Config) *redisStore {
	return &redisStore{cfg: cfg, conn: cfg.Redis, prefix: "{filters:" + cfg.Network + "}:"}
}

// keys are the keys of filter id of scope; KEYS[6] is the set of the scope's /48, or
// the scope's own (KEYS[2] again: adding to it twice is adding once) when it has none.
func (r *redisStore) keys(id, scope string) []string {
	agg := aggScope(scope)
	if agg == "" {
		agg = scope
	}
	return []string{r.prefix + "all", r.prefix + "t:" + scope, r.prefix + "size", r.prefix + "bytes", r.prefix + "f:" + id,
		r.prefix + "t:" + agg}
}

// maxAgg is the bound of KEYS[6]: the /48's, or the scope's own when it has none.
func (r *redisStore) maxAgg(scope string) string {
	if aggScope(scope) == "" {
		return strconv.Itoa(r.cfg.MaxPerTenant)
	}
	return strconv.Itoa(block48Factor * r.cfg.MaxPerTenant)
}

// purgeLua drops the expired ids from the sets and their bytes from the sum.
const purgeLua = `
local now = ARGV[1]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local sz = redis.call('HGET', KEYS[3], id)
  if sz then redis.call('DECRBY', KEYS[4], sz); redis.call('HDEL', KEYS[3], id) end
  redis.call('ZREM', KEYS[1], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
local function touch(ttl)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
  redis.call('PEXPIRE', KEYS[6], ttl)
end
`

// createScript: ARGV now, exp, maxTotal, maxTenant, maxBytes, blob, ttl, id, maxAgg.
// 0 created; 1 over the total; 2 over the scope's; 3 over the bytes; 4 over the /48's.
var createScript = redisconn.NewScript(purgeLua + `
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[9]) then return 4 end
local size = string.len(ARGV[6])
if tonumber(redis.call('GET', KEYS[4]) or '0') + size > tonumber(ARGV[5]) then return 3 end
redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[7])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[8])
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[8])
redis.call('HSET', KEYS[3], ARGV[8], size)
redis.call('INCRBY', KEYS[4], size)
touch(ARGV[7])
return 0`)

// roomScript: ARGV now, maxTotal, maxTenant, maxAgg. 0 room; 1 over the total; 2 over
// the scope's; 4 over the /48's.
var roomScript = redisconn.NewScript(purgeLua + `
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[4]) then return 4 end
return 0`)

// saveScript: ARGV now, old, new, exp, ttl, id, maxBytes. 0 saved; 1 changed; 2 gone;
// 3 over the bytes.
var saveScript = redisconn.NewScript(purgeLua + `
local cur = redis.call('GET', KEYS[5])
if not cur then return 2 end
if cur ~= ARGV[2] then return 1 end
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[6]) or '0')
local size = string.len(ARGV[3])
if size > old and tonumber(redis.call('GET', KEYS[4]) or '0') + size - old > tonumber(ARGV[7]) then return 3 end
redis.call('SET', KEYS[5], ARGV[3], 'PX', ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6])
redis.call('ZADD', KEYS[6], ARGV[4], ARGV[6])
redis.call('HSET', KEYS[3], ARGV[6], size)
redis.call('INCRBY', KEYS[4], size - old)
touch(ARGV[5])
return 0`)

// removeScript: ARGV now, old, id. 0 removed; 1 changed; 2 gone.
var removeScript = redisconn.NewScript(purgeLua + `
local cur = redis.call('GET', KEYS[5])
if not cur then return 2 end
if cur ~= ARGV[2] then return 1 end
redis.call('DEL', KEYS[5])
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[6], ARGV[3])
local sz = redis.call('HGET', KEYS[3], ARGV[3])
if sz then redis.call('DECRBY', KEYS[4], sz); redis.call('HDEL', KEYS[3], ARGV[3]) end
return 0`)

func (r *redisStore) run(ctx context.Context, s *redisconn.Script, keys []string, args ...string) (int64, error) {
	if !r.conn.Up() {
		return 0, errStateDown
	}
	rs := r.conn.EvalMulti(ctx, s, []redisconn.Exec{{Keys: keys, Args: args}})
	n, err := rs[0].AsInt64()
	if err != nil {
		r.cfg.Log.Warn("filter state: Redis call failed", "err", err)
		return 0, errStateDown
	}
	return n, nil
}

func (r *redisStore) times() (now, exp, ttl string) {
	t := r.cfg.Now()
	return strconv.FormatInt(t.UnixMilli(), 10), strconv.FormatInt(t.Add(r.cfg.Timeout).UnixMilli(), 10),
		strconv.FormatInt(r.cfg.Timeout.Milliseconds(), 10)
}

func (r *redisStore) room(ctx context.Context, scope string) error {
	now, _, _ := r.times()
	n, err := r.run(ctx, roomScript, r.keys("", scope), now, strconv.Itoa(r.cfg.MaxTotal), strconv.Itoa(r.cfg.MaxPerTenant),
		r.maxAgg(scope))
	return r.refusal(n, err)
}

// refusal is the error for what the room and create scripts return: 1 over the total,
// 2 over the scope's count, 3 over the bytes, 4 over the /48's count.
func (r *redisStore) refusal(n int64, err error) error {
	switch {
	case err != nil:
		return err
	case n == 1:
		return r.svc.errTotal()
	case n == 2:
		return r.svc.errPerTenant()
	case n == 3:
		return r.svc.errBytes()
	case n == 4:
		return r.svc.errPer48()
	}
	return nil
}

func (r *redisStore) create(ctx context.Context, id, scope string, blob []byte) error {
	now, exp, ttl := r.times()
	n, err := r.run(ctx, createScript, r.keys(id, scope), now, exp, strconv.Itoa(r.cfg.MaxTotal),
		strconv.Itoa(r.cfg.MaxPerTenant), strconv.FormatInt(r.cfg.MaxBytes, 10), string(blob), ttl, id, r.maxAgg(scope))
	return r.refusal(n, err)
}

func (r *redisStore) load(ctx context.Context, id string) ([]byte, error) {
	if !r.conn.Up() {
		return nil, errStateDown
	}
	b, err := r.conn.Do(ctx, r.conn.B().Get().Key(r.prefix+"f:"+id).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		r.cfg.Log.Warn("filter state: Redis call failed", "err", err)
		return nil, errStateDown
	}
	return b, nil
}

func (r *redisStore) save(ctx context.Context, id, scope string, old, blob []byte) (result, error) {
	now, exp, ttl := r.times()
	n, err := r.run(ctx, saveScript, r.keys(id, scope), now, string(old), string(blob), exp, ttl, id,
		strconv.FormatInt(r.cfg.MaxBytes, 10))
	switch {
	case err != nil:
		return gone, err
	case n == 3:
		return gone, r.svc.errBytes()
	case n > 3:
		return gone, fmt.Errorf("filter save: unexpected answer %d", n)
	}
	return result(n), nil
}

func (r *redisStore) remove(ctx context.Context, id, scope string, old []byte) (result, error) {
	now, _, _ := r.times()
	n, err := r.run(ctx, removeScript, r.keys(id, scope), now, string(old), id)
	if err != nil {
		return gone, err
	}
	return result(n), nil
}
