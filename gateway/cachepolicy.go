package gateway

import (
	"github.com/infura-gateway/infura-gateway/proto"
)

// cachePolicy says how the cache treats one call.
type cachePolicy uint8

const (
	// noCache: writes, filters, subscriptions, pending state, unknown methods. Forwarded
	// as they are: eth_sendRawTransaction is never cached, coalesced or retried.
	noCache cachePolicy = iota
	// coalesceOnly: read-only calls whose answer is not stored (eth_getLogs,
	// eth_estimateGas), but identical calls in flight share one upstream request.
	coalesceOnly
	// headScoped: answers that change with the chain head (eth_blockNumber,
	// eth_gasPrice, "latest" blocks): served until the next head, at most CacheMaxAge.
	headScoped
	// byNumber: answers about block n: immutable once n is CacheDepth below the head,
	// head-scoped before that.
	byNumber
	// byHash: answers about a block named by its hash: immutable.
	byHash
	// txByHash: a transaction or receipt by hash: immutable once the block holding it
	// is deep, head-scoped before (a reorg can move a transaction to another block).
	txByHash
)

type methodRule struct {
	pol      cachePolicy
	blockArg int8 // index of the block parameter in params, -1 for none
}

var methodRules [proto.NumMethods]methodRule

func init() {
	set := func(pol cachePolicy, blockArg int8, names ...string) {
		for _, n := range names {
			m := proto.MethodNamed(n)
			if m == proto.MethodOther {
				panic("BUG: cache rule for unknown method " + n)
			}
			methodRules[m] = methodRule{pol, blockArg}
		}
	}
	set(headScoped, -1, "eth_blockNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_blobBaseFee",
		"eth_chainId", "net_version", "eth_syncing", "web3_clientVersion")
	set(byNumber, 0, "eth_getBlockByNumber", "eth_getTransactionByBlockNumberAndIndex",
		"eth_getBlockTransactionCountByNumber", "eth_getUncleCountByBlockNumber", "eth_getBlockReceipts")
	set(byNumber, 1, "eth_getBalance", "eth_getCode", "eth_getTransactionCount", "eth_call", "eth_feeHistory")
	set(byNumber, 2, "eth_getStorageAt", "eth_getProof")
	set(byHash, -1, "eth_getBlockByHash", "eth_getBlockTransactionCountByHash",
		"eth_getTransactionByBlockHashAndIndex", "eth_getUncleCountByBlockHash")
	set(txByHash, -1, "eth_getTransactionByHash", "eth_getTransactionReceipt")
	set(coalesceOnly, -1, "eth_estimateGas", "eth_getLogs", "eth_createAccessList", "net_peerCount", "net_listening")
}

// classify returns the cachePolicy of method m with raw params, and for byNumber the block.
func classify(m proto.Method, params []byte) (cachePolicy, uint64) {
	r := methodRules[m]
	if r.pol != byNumber {
		return r.pol, 0
	}
	var arg []byte
	if len(params) > 0 {
		if proto.FirstByte(params) != '[' {
			return noCache, 0
		}
		if s := proto.Nth(params, int(r.blockArg)); s.Present() {
			arg = s.Bytes(params)
		}
	}
	switch kind, n := proto.ParseBlockRef(arg); kind {
	case proto.BlockLatest, proto.BlockSafe, proto.BlockFinalized:
		return headScoped, 0
	case proto.BlockNumber:
		return byNumber, n
	case proto.BlockHash:
		return byHash, 0
	}
	return noCache, 0 // pending, or a parameter the node will reject
}
