package testnode

import (
	"encoding/json"
	"fmt"
	"testing"
)

// Signed is a transaction the node signed and did not send.
type Signed struct {
	Raw  string // the raw transaction, for eth_sendRawTransaction
	Hash string
	Type string // 0x0 legacy, 0x1 access list, 0x2 dynamic fee
}

// SignTransfer has the node sign (eth_signTransaction), without sending it, a transfer
// of 1 wei from its dev account to 0x…dEaD with the account's next pending nonce and
// the fee fields fee (nil: a dynamic fee).
func (n *Node) SignTransfer(t testing.TB, fee map[string]any) Signed {
	t.Helper()
	from := n.DevAccount(t)
	var nonce string
	if err := json.Unmarshal(n.Call(t, "eth_getTransactionCount", from, "pending"), &nonce); err != nil {
		t.Fatal(err)
	}
	if fee == nil {
		fee = map[string]any{"maxFeePerGas": "0x2540be400", "maxPriorityFeePerGas": "0x1"}
	}
	tx := map[string]any{"from": from, "to": "0x000000000000000000000000000000000000dEaD", "value": "0x1",
		"gas": "0x5208", "nonce": nonce, "chainId": fmt.Sprintf("0x%x", n.ChainID())}
	for k, v := range fee {
		tx[k] = v
	}
	var signed struct {
		Raw string `json:"raw"`
		Tx  struct {
			Hash string `json:"hash"`
			Type string `json:"type"`
		} `json:"tx"`
	}
	res := n.Call(t, "eth_signTransaction", tx)
	if err := json.Unmarshal(res, &signed); err != nil || signed.Raw == "" {
		t.Fatalf("eth_signTransaction: %s %v", res, err)
	}
	return Signed{Raw: signed.Raw, Hash: signed.Tx.Hash, Type: signed.Tx.Type}
}
