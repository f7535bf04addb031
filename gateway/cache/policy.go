package cache

import (
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/proto"
)

// Policy says how the cache treats one call.
type Policy uint8

const (
	// NoCache: writes, filters, subscriptions, pending state, unknown methods. Forwarded
	// as they are: eth_sendRawTransaction is never cached, coalesced or retried.
	NoCache Policy = iota
	// CoalesceOnly: read-only calls whose answer is not stored (eth_getLogs,
	// eth_estimateGas), but identical calls in flight share one upstream request.
	CoalesceOnly
	// HeadScoped: answers that change with the chain head (eth_blockNumber,
	// eth_gasPrice, "latest" blocks): served until the next head, at most CacheMaxAge.
	HeadScoped
	// ByNumber: answers about block n: immutable once n is CacheDepth below the head,
	// head-scoped before that.
	ByNumber
	// ByHash: answers about a block named by its hash: immutable.
	ByHash
	// TxByHash: a transaction or receipt by hash: immutable once the block holding it
	// is deep, head-scoped before (a reorg can move a transaction to another block).
	TxByHash
)

var methodRules [proto.NumMethods]Policy

func init() {
	set := func(pol Policy, names ...string) {
		for _, n := range names {
			m := proto.MethodNamed(n)
			if m == proto.MethodOther {
				panic("BUG: cache rule for unknown method " + n)
			}
			methodRules[m] = pol
		}
	}
	set(HeadScoped, "eth_blockNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_blobBaseFee",
		"eth_chainId", "net_version", "eth_syncing", "web3_clientVersion")
	set(ByNumber, "eth_getBlockByNumber", "eth_getTransactionByBlockNumberAndIndex",
		"eth_getBlockTransactionCountByNumber", "eth_getUncleCountByBlockNumber", "eth_getBlockReceipts",
		"eth_getBalance", "eth_getCode", "eth_getTransactionCount", "eth_call", "eth_feeHistory",
		"eth_getStorageAt", "eth_getProof")
	set(ByHash, "eth_getBlockByHash", "eth_getBlockTransactionCountByHash",
		"eth_getTransactionByBlockHashAndIndex", "eth_getUncleCountByBlockHash")
	set(TxByHash, "eth_getTransactionByHash", "eth_getTransactionReceipt")
	set(CoalesceOnly, "eth_estimateGas", "eth_getLogs", "eth_createAccessList", "net_peerCount", "net_listening")
}

// Classify returns the cache policy of r, and for ByNumber the block.
func Classify(r *proto.Request) (Policy, uint64) {
	pol := methodRules[r.Method]
	if pol != ByNumber {
		return pol, 0
	}
	switch kind, n, _ := r.Block(); kind {
	case proto.BlockLatest, proto.BlockSafe, proto.BlockFinalized:
		return HeadScoped, 0
	case proto.BlockNumber:
		return ByNumber, n
	case proto.BlockHash:
		return ByHash, 0
	}
	return NoCache, 0 // pending, or a parameter the node will reject
}

// sharedAdmission says, by method, whether answers may go to the shared tier. It is
// fixed at start (a change takes a restart).
type sharedAdmission [proto.NumMethods]bool

// newSharedAdmission admits the default methods and extra, each of which must be one
// the cache keeps as immutable (config.CheckSharedMethods).
func newSharedAdmission(extra []string) (sharedAdmission, error) {
	var a sharedAdmission
	if err := config.CheckSharedMethods(extra); err != nil {
		return a, err
	}
	for _, n := range config.SharedByDefault {
		a[proto.MethodNamed(n)] = true
	}
	for _, n := range extra {
		a[proto.MethodNamed(n)] = true
	}
	return a, nil
}
