package proto

import "testing"

// Only methods on the list of reads are retried or hedged; every other method, known
// write or unknown, is sent once (issue 19, F7). Each method is judged by its class.
func TestClassAndRead(t *testing.T) {
	cases := []struct {
		name string
		cls  Class
		read bool
	}{
		{"eth_blockNumber", ClassCheap, true},
		{"eth_getBalance", ClassCheap, true},
		{"eth_getTransactionReceipt", ClassCheap, true},
		{"eth_call", ClassCall, true},
		{"eth_estimateGas", ClassCall, true},
		{"eth_getProof", ClassCall, true},
		{"debug_traceTransaction", ClassCall, true},
		{"trace_block", ClassCall, true},
		{"eth_getLogs", ClassLogs, true},
		{"eth_getFilterChanges", ClassLogs, false},
		{"eth_newFilter", ClassLogs, false},
		{"eth_subscribe", ClassCheap, false},
		{"eth_sendRawTransaction", ClassSend, false},
		{"eth_sendPrivateTransaction", ClassCall, false},
		{"eth_sendBundle", ClassCall, false},
		{"eth_sendRawTransactionConditional", ClassCall, false},
		{"mev_sendBundle", ClassCall, false},
		{"flashbots_sendPrivateTransaction", ClassCall, false},
		{"eth_sendRawTransactionSync", ClassCall, false}, // waits for inclusion
		{"acme_placeOrder", ClassCall, false},
		{"debug_setHead", ClassCall, false},
		{"ETH_CALL", ClassCall, false}, // not the table's spelling: unknown
	}
	for _, c := range cases {
		var r Request
		r.Set([]byte(c.name), nil)
		if got := r.Class(); got != c.cls {
			t.Errorf("%s: class %s, want %s", c.name, got, c.cls)
		}
		if got := r.IsRead(); got != c.read || r.Retryable() != c.read {
			t.Errorf("%s: read %v, retryable %v; want %v", c.name, got, r.Retryable(), c.read)
		}
	}
	// Every method of the table is classified on purpose: a new method is a write
	// until someone puts it on the list of reads.
	for m := Method(2); int(m) < NumMethods; m++ {
		if readOf[m] && IsWrite([]byte(m.String())) {
			t.Errorf("%s is both a read and a write", m)
		}
	}
}

func TestClassAllocatesNothing(t *testing.T) {
	var known, other Request
	known.Set([]byte("eth_getLogs"), nil)
	other.Set([]byte("trace_replayBlockTransactions"), nil)
	if n := testing.AllocsPerRun(100, func() {
		_, _, _, _ = known.Class(), known.IsRead(), other.Class(), other.IsRead()
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
