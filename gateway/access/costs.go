package access

import (
	"github.com/infura-gateway/infura-gateway/proto"
)

// Cost units per method: what a call spends of a plan's units_per_second and
// daily_units. The defaults are Alchemy's published compute units ("Raw Method Costs",
// https://docs.alchemy.com/alchemy/documentation/compute-units), the most widely used
// per-method table: cheap reads cost 10-26, log and trace queries 75, a transaction
// 250. The configuration file's costs: section overrides any of them, and sets the
// cost of methods not listed (default 10).
var defaultCosts = map[string]int64{
	"eth_uninstallFilter": 10, "eth_accounts": 10, "eth_blockNumber": 10, "eth_chainId": 10,
	"eth_protocolVersion": 10, "eth_syncing": 10, "net_listening": 10, "net_version": 10,
	"eth_subscribe": 10, "eth_unsubscribe": 10,
	"eth_getTransactionReceipt": 15, "eth_getUncleByBlockHashAndIndex": 15, "eth_getUncleByBlockNumberAndIndex": 15,
	"eth_getTransactionByBlockHashAndIndex": 15, "eth_getTransactionByBlockNumberAndIndex": 15,
	"eth_getUncleCountByBlockHash": 15, "eth_getUncleCountByBlockNumber": 15, "web3_clientVersion": 15, "web3_sha3": 15,
	"eth_getBlockByNumber": 16, "eth_getStorageAt": 17, "eth_getTransactionByHash": 17,
	"eth_gasPrice": 19, "eth_getBalance": 19, "eth_getCode": 19,
	"eth_getFilterChanges": 20, "eth_newBlockFilter": 20, "eth_newFilter": 20, "eth_newPendingTransactionFilter": 20,
	"eth_getBlockTransactionCountByHash": 20, "eth_getBlockTransactionCountByNumber": 20,
	"eth_getProof": 21, "eth_getBlockByHash": 21, "eth_getTransactionCount": 26, "eth_call": 26,
	"eth_getFilterLogs": 75, "eth_getLogs": 75, "trace_call": 75, "trace_filter": 75,
	"eth_estimateGas": 87, "eth_sendRawTransaction": 250, "debug_traceTransaction": 309,
}

// defaultCost is the cost of a method no table lists.
const defaultCost = 10

// costTable gives a call's cost without allocating: by method index for the methods the
// gateway knows, by name for the others.
type costTable struct {
	known [proto.NumMethods]int64
	named map[string]int64 // methods outside proto's table
	def   int64
}

// newCostTable merges overrides (method → units; "default" sets the default) into the
// defaults.
func newCostTable(overrides map[string]int64) *costTable {
	t := &costTable{named: map[string]int64{}, def: defaultCost}
	all := map[string]int64{}
	for m, c := range defaultCosts {
		all[m] = c
	}
	for m, c := range overrides {
		if m == "default" {
			t.def = c
			continue
		}
		all[m] = c
	}
	for i := range t.known {
		t.known[i] = -1
	}
	for m, c := range all {
		if idx := proto.MethodNamed(m); idx != proto.MethodOther {
			t.known[idx] = c
		} else {
			t.named[m] = c
		}
	}
	for i, c := range t.known {
		if c < 0 {
			t.known[i] = t.def
		}
	}
	return t
}

func (t *costTable) of(r *proto.Request) int64 {
	if r.Method != proto.MethodOther {
		return t.known[r.Method]
	}
	if c, ok := t.named[string(r.Name)]; ok {
		return c
	}
	return t.def
}
