package proto

// Method indexes a fixed table of JSON-RPC method names. Metric labels and cache rules
// use it, so a client cannot create unbounded label values: unknown names become
// MethodOther.
type Method uint8

// The methods the gateway knows by name. Order is irrelevant; names are what count.
var methodNames = [...]string{
	"other", "batch",
	"eth_blockNumber", "eth_gasPrice", "eth_chainId", "eth_syncing", "eth_accounts",
	"eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockReceipts",
	"eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash",
	"eth_getUncleCountByBlockNumber", "eth_getUncleCountByBlockHash",
	"eth_getTransactionByHash", "eth_getTransactionByBlockNumberAndIndex",
	"eth_getTransactionByBlockHashAndIndex", "eth_getTransactionReceipt",
	"eth_getTransactionCount", "eth_getBalance", "eth_getCode", "eth_getStorageAt", "eth_getProof",
	"eth_call", "eth_estimateGas", "eth_createAccessList", "eth_feeHistory",
	"eth_maxPriorityFeePerGas", "eth_blobBaseFee",
	"eth_sendRawTransaction", "eth_sendTransaction", "eth_sign", "eth_signTransaction",
	"eth_getLogs", "eth_newFilter", "eth_newBlockFilter", "eth_newPendingTransactionFilter",
	"eth_getFilterChanges", "eth_getFilterLogs", "eth_uninstallFilter",
	"eth_subscribe", "eth_unsubscribe",
	"net_version", "net_listening", "net_peerCount", "web3_clientVersion", "web3_sha3",
}

// Methods used by name in code.
const (
	MethodOther Method = 0
	MethodBatch Method = 1
)

// NumMethods is the size of the method table.
const NumMethods = len(methodNames)

var methodIndex = func() map[string]Method {
	m := make(map[string]Method, len(methodNames))
	for i, n := range methodNames {
		m[n] = Method(i)
	}
	delete(m, "other")
	delete(m, "batch")
	return m
}()

// MethodOf returns the table index of a decoded method name; it does not allocate.
func MethodOf(name []byte) Method {
	if m, ok := methodIndex[string(name)]; ok {
		return m
	}
	return MethodOther
}

// MethodNamed is MethodOf for names known at compile time.
func MethodNamed(name string) Method { return MethodOf([]byte(name)) }

// String returns the method's name (the metric label value).
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "other"
}

// IsWrite reports whether a decoded method name changes state or spends funds
// (eth_sendRawTransaction, eth_sendTransaction, personal_sendTransaction,
// eth_submitWork, ...). A write that may have reached an upstream is never sent again:
// not retried, not hedged, not coalesced. The test is on the name, not the table, so a
// write the table does not know is still recognised.
func IsWrite(name []byte) bool {
	return hasPrefix(name, "eth_send") || hasPrefix(name, "eth_submit") ||
		hasPrefix(name, "personal_send")
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }
