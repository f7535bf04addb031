package loadgen

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// check validates a result and records heads and block hashes.
func (w *worker) check(kind string, old uint64, res json.RawMessage, sent, got time.Time) error {
	l := w.l
	bad := func(format string, args ...any) error {
		return &failure{kind: KindBadAnswer, detail: fmt.Sprintf(format, args...)}
	}
	switch kind {
	case ReqBlockNumber:
		var s string
		if json.Unmarshal(res, &s) != nil {
			return bad("eth_blockNumber result %s", res)
		}
		n, err := parseQuantity(s)
		if err != nil {
			return bad("eth_blockNumber result %s", res)
		}
		w.head(SourceBlockNumber, n, sent, got)
	case ReqLatestBlock, ReqOldBlock:
		if string(res) == "null" {
			if kind == ReqLatestBlock {
				return &failure{kind: KindNullBlock, detail: "latest block is null"}
			}
			return &failure{kind: KindNullBlock, detail: fmt.Sprintf("block %d is null; a head of %d was seen before it was asked", old, l.maxHead.Load())}
		}
		var b struct{ Number, Hash string }
		if json.Unmarshal(res, &b) != nil || b.Hash == "" {
			return bad("block result %.200s", res)
		}
		n, err := parseQuantity(b.Number)
		if err != nil {
			return bad("block number %q", b.Number)
		}
		if kind == ReqOldBlock && n != old {
			return bad("asked block %d, got block %d", old, n)
		}
		if prev, loaded := l.hashes.LoadOrStore(n, b.Hash); loaded && prev.(string) != b.Hash {
			// Expected only across a reorg (a dev node killed and restarted on its data
			// directory); anything else is a wrong answer.
			return &failure{kind: KindMismatch, detail: fmt.Sprintf("block %d has hash %s, earlier %s", n, b.Hash, prev)}
		}
		if kind == ReqLatestBlock {
			w.head(SourceLatestBlock, n, sent, got)
		}
	case ReqChainID:
		var s string
		if json.Unmarshal(res, &s) != nil || !strings.HasPrefix(s, "0x") {
			return bad("eth_chainId result %s", res)
		}
		if prev := l.chainID.Load(); prev == nil {
			l.chainID.CompareAndSwap(nil, &s)
		} else if *prev != s {
			return &failure{kind: KindMismatch, detail: fmt.Sprintf("eth_chainId %s, want %s", s, *prev)}
		}
	case ReqBalance:
		var s string
		if json.Unmarshal(res, &s) != nil {
			return bad("eth_getBalance result %s", res)
		}
		if !isQuantity(s) { // wider than 64 bits: the dev account holds about 2^256 wei
			return bad("eth_getBalance result %s", res)
		}
	case ReqCall:
		var s string
		if json.Unmarshal(res, &s) != nil || !strings.HasPrefix(s, "0x") {
			return bad("eth_call result %s", res)
		}
	}
	return nil
}

func (w *worker) head(src Source, n uint64, sent, got time.Time) {
	w.heads = append(w.heads, Head{Sent: sent, Received: got, Number: n, Worker: w.id, Source: src})
	for {
		m := w.l.maxHead.Load()
		if n <= m || w.l.maxHead.CompareAndSwap(m, n) {
			return
		}
	}
}
