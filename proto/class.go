package proto

// Class groups methods by what they cost the node, so upstream health judges each
// call against calls of its own kind: a 15 s eth_call says nothing about how fast an
// upstream answers eth_blockNumber.
type Class uint8

const (
	// ClassCheap: lookups whose cost the chain bounds (heads, blocks, receipts,
	// balances, fee data).
	ClassCheap Class = iota
	// ClassCall: execution and tracing (eth_call, eth_estimateGas, debug_, trace_),
	// and methods the gateway does not know: their cost is the client's to choose.
	ClassCall
	// ClassLogs: eth_getLogs and log filters, whose cost grows with the range asked.
	ClassLogs
	// ClassSend: the table's writes (eth_sendRawTransaction, eth_sendTransaction).
	ClassSend
	// NumClasses is the number of classes.
	NumClasses
)

var classNames = [NumClasses]string{"cheap", "call", "logs", "send"}

func (c Class) String() string { return classNames[c] }

// Judged reports whether a call of the class is evidence about the upstream: its
// latency can get the upstream banned as slow, and its timeout counts as a failure.
// ClassCall and ClassLogs are not: a client picks how long they take.
func (c Class) Judged() bool { return c == ClassCheap || c == ClassSend }

// classOf and readOf hold, per known method, its class and whether it is a read.
var classOf, readOf = func() (cls [NumMethods]Class, read [NumMethods]bool) {
	cls[MethodOther], cls[MethodBatch] = ClassCall, ClassCall
	set := func(c Class, isRead bool, names ...string) {
		for _, n := range names {
			m := MethodNamed(n)
			if m == MethodOther {
				panic("BUG: class of unknown method " + n)
			}
			cls[m], read[m] = c, isRead
		}
	}
	set(ClassCheap, true, "eth_blockNumber", "eth_gasPrice", "eth_chainId", "eth_syncing",
		"eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockReceipts",
		"eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash",
		"eth_getUncleCountByBlockNumber", "eth_getUncleCountByBlockHash",
		"eth_getTransactionByHash", "eth_getTransactionByBlockNumberAndIndex",
		"eth_getTransactionByBlockHashAndIndex", "eth_getTransactionReceipt",
		"eth_getTransactionCount", "eth_getBalance", "eth_getCode", "eth_getStorageAt",
		"eth_feeHistory", "eth_maxPriorityFeePerGas", "eth_blobBaseFee",
		"net_version", "net_listening", "net_peerCount", "web3_clientVersion", "web3_sha3")
	// eth_getProof takes a list of storage keys as long as the client likes.
	set(ClassCall, true, "eth_call", "eth_estimateGas", "eth_createAccessList", "eth_getProof")
	set(ClassLogs, true, "eth_getLogs")
	// Filters and subscriptions live on one node: a second eth_newFilter elsewhere is
	// a second filter, eth_getFilterChanges moves the filter's cursor, and another node
	// does not know the filter. Signing is not a read either. None of them is sent twice.
	set(ClassLogs, false, "eth_newFilter", "eth_getFilterLogs", "eth_getFilterChanges")
	set(ClassCheap, false, "eth_accounts", "eth_newBlockFilter", "eth_newPendingTransactionFilter",
		"eth_uninstallFilter", "eth_subscribe", "eth_unsubscribe", "eth_sign", "eth_signTransaction")
	set(ClassSend, false, "eth_sendRawTransaction", "eth_sendTransaction")
	return cls, read
}()

// readsOutsideTable are reads the method table does not name (so their metric label
// stays "other") that may still be retried and hedged: tracing and debugging reads.
var readsOutsideTable = [...]string{
	"debug_traceTransaction", "debug_traceCall", "debug_traceBlockByNumber", "debug_traceBlockByHash",
	"debug_getRawBlock", "debug_getRawHeader", "debug_getRawReceipts", "debug_getRawTransaction",
	"trace_block", "trace_transaction", "trace_call", "trace_callMany", "trace_filter", "trace_get",
	"trace_replayTransaction", "trace_replayBlockTransactions", "trace_rawTransaction",
}

// Class returns the request's class: one table lookup. A method outside the table
// (debug_, trace_, bundles, eth_sendRawTransactionSync, which waits for inclusion) is
// ClassCall: how long it takes is the client's to choose, so it is never judged.
func (r *Request) Class() Class { return classOf[r.Method] }

// IsRead reports whether r is on the gateway's list of reads: methods that change
// nothing and answer the same wherever they run, so sending one again (a retry on
// another upstream, a hedge) is harmless. Every other method, whether a known write
// or a method the gateway does not know (eth_sendBundle, mev_sendBundle, a vendor's
// private-transaction call), is sent once, to one upstream.
func (r *Request) IsRead() bool {
	if r.Method != MethodOther {
		return readOf[r.Method]
	}
	for _, n := range readsOutsideTable {
		if string(r.Name) == n {
			return true
		}
	}
	return false
}
