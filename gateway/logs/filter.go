package logs

import (
	"math"
	"strconv"

	"github.com/infura-gateway/infura-gateway/proto"
)

// filter is one eth_getLogs filter object as the gateway reads it: the block bounds
// and the raw address and topics, copied unchanged into every chunk.
type filter struct {
	fromKind, toKind proto.BlockKind
	from, to         uint64
	address, topics  []byte // raw JSON values; nil: absent
	blockHash        bool
}

// parseFilter reads params ([{...}], canonical). ok is false for anything the gateway
// should leave to the node as it is: not one object, a member spelled otherwise than
// geth names it, a duplicate, a block value it cannot read. The node then answers it
// (or refuses it) itself, exactly as before.
func parseFilter(params []byte) (f filter, ok bool) {
	it, err := proto.NewArrayIter(params)
	if err != nil {
		return f, false
	}
	el, more, err := it.Next()
	if err != nil || !more {
		return f, false
	}
	if _, more, err := it.Next(); err != nil || more {
		return f, false
	}
	obj := el.Bytes(params)
	oi, err := proto.NewObjectIter(obj, 0)
	if err != nil {
		return f, false
	}
	var from, to []byte
	var seenFrom, seenTo, seenAddr, seenTopics bool
	for {
		key, val, more, err := oi.Next()
		if err != nil {
			return f, false
		}
		if !more {
			break
		}
		v := val.Bytes(obj)
		switch string(key.Bytes(obj)) {
		case `"fromBlock"`:
			if seenFrom {
				return f, false
			}
			seenFrom, from = true, v
		case `"toBlock"`:
			if seenTo {
				return f, false
			}
			seenTo, to = true, v
		case `"address"`:
			if seenAddr {
				return f, false
			}
			seenAddr, f.address = true, v
		case `"topics"`:
			if seenTopics {
				return f, false
			}
			seenTopics, f.topics = true, v
		case `"blockHash"`:
			f.blockHash = true
		default:
			return f, false
		}
	}
	if string(from) == "null" {
		from = nil
	}
	if string(to) == "null" {
		to = nil
	}
	f.fromKind, f.from = proto.ParseBlockRef(from)
	f.toKind, f.to = proto.ParseBlockRef(to)
	if f.fromKind == proto.BlockInvalid || f.fromKind == proto.BlockHash ||
		f.toKind == proto.BlockInvalid || f.toKind == proto.BlockHash || (from != nil && from[0] == '{') || (to != nil && to[0] == '{') ||
		!gethNumber(f.fromKind, from, f.from) || !gethNumber(f.toKind, to, f.to) {
		return f, false
	}
	return f, true
}

// gethNumber reports whether a bound read as kind and n is one geth reads too: a number
// past int64 ("block number larger than int64"; 2^64-1 would be pendingBlock in a
// chunk's bounds) or spelled with leading zeros ("0x01") is refused by geth, so the
// query goes to the node whole for its refusal rather than be split and answered.
func gethNumber(kind proto.BlockKind, raw []byte, n uint64) bool {
	if kind != proto.BlockNumber {
		return true
	}
	raw = proto.TrimWS(raw)
	return n <= math.MaxInt64 && !(len(raw) > 5 && raw[0] == '"' && raw[1] == '0' && raw[2] == 'x' && raw[3] == '0')
}

// headOnly reports whether both bounds mean the head (latest, pending, or absent): one
// upstream call answers of one head already, so such a query goes as it is.
func (f *filter) headOnly() bool {
	head := func(k proto.BlockKind) bool { return k == proto.BlockLatest || k == proto.BlockPending }
	return head(f.fromKind) && head(f.toKind)
}

// appendParams appends the params of the filter over blocks [from, to]: address,
// fromBlock, toBlock, topics, in that order (a node reads members in any order), so
// one chunk has one spelling and one cache key.
func (f *filter) appendParams(dst []byte, from, to uint64) []byte {
	dst = append(dst, `[{`...)
	if f.address != nil {
		dst = append(append(dst, `"address":`...), f.address...)
		dst = append(dst, ',')
	}
	dst = appendQuantity(append(dst, `"fromBlock":`...), from)
	dst = appendQuantity(append(dst, `,"toBlock":`...), to)
	if f.topics != nil {
		dst = append(append(dst, `,"topics":`...), f.topics...)
	}
	return append(dst, `}]`...)
}

// pendingBlock stands for a toBlock of "pending" in a chunk's bounds (query.past).
const pendingBlock = ^uint64(0)

func appendQuantity(dst []byte, n uint64) []byte {
	if n == pendingBlock {
		return append(dst, `"pending"`...)
	}
	return append(strconv.AppendUint(append(dst, `"0x`...), n, 16), '"')
}
