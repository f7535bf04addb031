// Cost presets: what one call costs in a provider's units, from the providers' public
// tables. A method a table does not name costs its default.

package upstream

import (
	"fmt"
	"sort"
	"strings"

	"github.com/infura-gateway/infura-gateway/proto"
)

// costPresets are the provider tables by name.
var costPresets = map[string]struct {
	def     int64
	methods map[string]int64
}{
	// One per call: a node of your own, or a provider billing per request.
	"generic": {def: 1},
	// Alchemy compute units, "Raw Method Costs" of
	// https://docs.alchemy.com/reference/compute-units (also
	// https://docs.alchemyapi.io/documentation/compute-units). Methods it does not
	// list count as eth_call (26).
	"alchemy": {def: 26, methods: map[string]int64{
		"eth_uninstallFilter": 10, "eth_accounts": 10, "eth_blockNumber": 10, "eth_chainId": 10,
		"eth_protocolVersion": 10, "eth_syncing": 10, "net_listening": 10, "net_version": 10,
		"eth_subscribe": 10, "eth_unsubscribe": 10,
		"eth_getTransactionReceipt": 15, "eth_getUncleByBlockHashAndIndex": 15, "eth_getUncleByBlockNumberAndIndex": 15,
		"eth_getTransactionByBlockHashAndIndex": 15, "eth_getTransactionByBlockNumberAndIndex": 15,
		"eth_getUncleCountByBlockHash": 15, "eth_getUncleCountByBlockNumber": 15, "web3_clientVersion": 15, "web3_sha3": 15,
		"alchemy_getTokenMetadata": 16, "eth_getBlockByNumber": 16,
		"eth_getStorageAt": 17, "eth_getTransactionByHash": 17, "trace_get": 17,
		"alchemy_getTokenAllowance": 19, "eth_gasPrice": 19, "eth_getBalance": 19, "eth_getCode": 19,
		"eth_getFilterChanges": 20, "eth_newBlockFilter": 20, "eth_newFilter": 20, "eth_newPendingTransactionFilter": 20,
		"eth_getBlockTransactionCountByHash": 20, "eth_getBlockTransactionCountByNumber": 20,
		"eth_getProof": 21, "eth_getBlockByHash": 21, "trace_block": 24, "parity_getBlockReceipts": 24,
		"eth_getTransactionCount": 26, "eth_call": 26, "alchemy_getTokenBalances": 26, "trace_transaction": 26,
		"eth_getFilterLogs": 75, "eth_getLogs": 75, "trace_call": 75, "trace_callMany": 75,
		"trace_rawTransaction": 75, "trace_filter": 75,
		"eth_estimateGas": 87, "eth_sendRawTransaction": 250, "debug_traceTransaction": 309,
		"trace_replayTransaction": 2983, "trace_replayBlockTransactions": 2983,
	}},
	// Infura credits, https://docs.metamask.io/services/get-started/pricing/credit-cost/
	// (Ethereum table): a method it does not name costs the default of 80 credits.
	"infura": {def: 80, methods: map[string]int64{
		"eth_chainId": 5, "eth_getLogs": 255, "eth_estimateGas": 300,
	}},
}

// CostPresets names the cost presets, for validation messages.
func CostPresets() []string {
	var names []string
	for n := range costPresets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// costTable is a preset with the configured overrides: an array by the methods the
// gateway knows (one index per call), and a map for the others (a lookup that
// allocates nothing).
type costTable struct {
	known [proto.NumMethods]int64
	other map[string]int64
	def   int64
}

func newCostTable(preset string, overrides map[string]int64) (costTable, error) {
	if preset == "" {
		preset = "generic"
	}
	p, ok := costPresets[preset]
	if !ok {
		return costTable{}, fmt.Errorf("costs: unknown preset %q (want one of %s)", preset, strings.Join(CostPresets(), ", "))
	}
	t := costTable{def: p.def, other: map[string]int64{}}
	for m := range t.known {
		t.known[m] = p.def
	}
	set := func(name string, c int64) {
		if m := proto.MethodNamed(name); m != proto.MethodOther && m != proto.MethodBatch {
			t.known[m] = c
		} else {
			t.other[name] = c
		}
	}
	for name, c := range p.methods {
		set(name, c)
	}
	for name, c := range overrides {
		if c < 0 {
			return costTable{}, fmt.Errorf("costs: method %s: cost must be >= 0", name)
		}
		set(name, c)
	}
	return t, nil
}

// of is what req costs.
func (t *costTable) of(req *proto.Request) int64 {
	if req.Method != proto.MethodOther {
		return t.known[req.Method]
	}
	if c, ok := t.other[string(req.Name)]; ok {
		return c
	}
	return t.def
}
