package gateway

import (
	"fmt"
	"slices"
	"strings"

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

var methodRules [proto.NumMethods]cachePolicy

func init() {
	set := func(pol cachePolicy, names ...string) {
		for _, n := range names {
			m := proto.MethodNamed(n)
			if m == proto.MethodOther {
				panic("BUG: cache rule for unknown method " + n)
			}
			methodRules[m] = pol
		}
	}
	set(headScoped, "eth_blockNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_blobBaseFee",
		"eth_chainId", "net_version", "eth_syncing", "web3_clientVersion")
	set(byNumber, "eth_getBlockByNumber", "eth_getTransactionByBlockNumberAndIndex",
		"eth_getBlockTransactionCountByNumber", "eth_getUncleCountByBlockNumber", "eth_getBlockReceipts",
		"eth_getBalance", "eth_getCode", "eth_getTransactionCount", "eth_call", "eth_feeHistory",
		"eth_getStorageAt", "eth_getProof")
	set(byHash, "eth_getBlockByHash", "eth_getBlockTransactionCountByHash",
		"eth_getTransactionByBlockHashAndIndex", "eth_getUncleCountByBlockHash")
	set(txByHash, "eth_getTransactionByHash", "eth_getTransactionReceipt")
	set(coalesceOnly, "eth_estimateGas", "eth_getLogs", "eth_createAccessList", "net_peerCount", "net_listening")
}

// classify returns the cache policy of r, and for byNumber the block.
func classify(r *proto.Request) (cachePolicy, uint64) {
	pol := methodRules[r.Method]
	if pol != byNumber {
		return pol, 0
	}
	switch kind, n, _ := r.Block(); kind {
	case proto.BlockLatest, proto.BlockSafe, proto.BlockFinalized:
		return headScoped, 0
	case proto.BlockNumber:
		return byNumber, n
	case proto.BlockHash:
		return byHash, 0
	}
	return noCache, 0 // pending, or a parameter the node will reject
}

// The shared tier (Redis) holds what every replica can use and no client can inflate:
// blocks, receipts and transactions, looked up by hash or by deep block number. Each
// is bounded by the chain (one answer per block or transaction), so the tier's size
// follows the chain's, not what clients ask. Answers to eth_call and the state reads
// are as many as there are (address, data, block) triples a client can make up: they
// are kept in this replica's bounded in-process store only, unless named in
// -shared-cache-methods (shared_cache.methods). Whatever is admitted is also capped in
// size per answer and charged to its tenant's write budget (gateway/sharedcache).
var sharedByDefault = []string{
	"eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockReceipts",
	"eth_getTransactionByHash", "eth_getTransactionReceipt",
	"eth_getTransactionByBlockNumberAndIndex", "eth_getTransactionByBlockHashAndIndex",
	"eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash",
	"eth_getUncleCountByBlockNumber", "eth_getUncleCountByBlockHash",
}

// sharedOnRequest are the immutable (at a deep block) answers an operator may admit.
var sharedOnRequest = []string{
	"eth_call", "eth_getBalance", "eth_getCode", "eth_getStorageAt", "eth_getTransactionCount",
	"eth_getProof", "eth_feeHistory",
}

// sharedAdmission says, by method, whether answers may go to the shared tier. It is
// fixed at start (a change takes a restart).
type sharedAdmission [proto.NumMethods]bool

// newSharedAdmission admits the default methods and extra, each of which must be one
// the cache keeps as immutable.
func newSharedAdmission(extra []string) (sharedAdmission, error) {
	var a sharedAdmission
	for _, n := range sharedByDefault {
		a[proto.MethodNamed(n)] = true
	}
	for _, n := range extra {
		if !slices.Contains(sharedOnRequest, n) && !slices.Contains(sharedByDefault, n) {
			return a, fmt.Errorf("%q cannot be shared; want some of %s", n, strings.Join(sharedOnRequest, ", "))
		}
		a[proto.MethodNamed(n)] = true
	}
	return a, nil
}
