package logs

import (
	"strings"
	"testing"

	"github.com/infura-gateway/infura-gateway/proto"
)

// Providers' error texts as they answer them, and what the gateway reads from each.
func TestParseCapText(t *testing.T) {
	cases := []struct {
		src, text string
		want      capError
	}{
		{"Infura docs; aurora-is-near/aurora-relayer#327", "query returned more than 10000 results",
			capError{IsCap: true, Results: true}},
		{"INFURA/infura#237", "range 1000000 exceeds limit of 10000", capError{IsCap: true, MaxRange: 10000}},
		{"ethereum/go-ethereum#25343 (Alchemy)", "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can request any block range with a cap of 10K logs in the response. Based on your parameters and the response size limit, this block range should work: [0x0, 0x87fe9]",
			capError{IsCap: true, Results: true, MaxRange: 2000, Suggested: true, From: 0, To: 0x87fe9}},
		{"BobTheBuidler/dank_mids#772 (Alchemy)", "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters, this block range should work: [0x123c9b2, 0x123cba5]",
			capError{IsCap: true, MaxRange: 500, Suggested: true, From: 0x123c9b2, To: 0x123cba5}},
		{"OffchainLabs/arbitrum-sdk#609 (QuickNode)", "eth_getLogs is limited to a 10,000 range", capError{IsCap: true, MaxRange: 10000}},
		{"matter-labs/zksync-era#3412", "Query returned more than 10000 results. Try with this block range [0x0, 0x30f].",
			capError{IsCap: true, Results: true, Suggested: true, From: 0, To: 0x30f}},
		{"moonbeam-foundation/moonbeam#3250", "block range is too wide (maximum 1024)", capError{IsCap: true, MaxRange: 1024}},
		{"bobanetwork/boba_legacy#827 (Tenderly)", "range 9009594 is bigger than range limit 2000", capError{IsCap: true, MaxRange: 2000}},
		{"scroll-tech/go-ethereum#529", "block range is bigger than maxBlockRange", capError{IsCap: true}},
		{"the issue", "exceed maximum block range: 5000", capError{IsCap: true, MaxRange: 5000}},
		{"the issue", "range exceeds 2000", capError{IsCap: true, MaxRange: 2000}},
		{"AlphaWallet/alpha-wallet-ios#5277", "block range too high", capError{IsCap: true}},
		{"bancorprotocol/webapp#523 (Alchemy)", "Log response size exceeded. Please reduce query block range.", capError{IsCap: true, Results: true}},
		{"geth: a reversed range is the query's fault", "invalid block range params", capError{}},
		{"not a cap", "execution reverted", capError{}},
		{"not a cap", "header not found", capError{}},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			ans := `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":` + quote(tc.text) + `}}`
			if got := parseCapError([]byte(ans)); got != tc.want {
				t.Fatalf("%s: got %+v, want %+v", tc.src, got, tc.want)
			}
		})
	}
	// The detail in data, as Tenderly sends it.
	ans := `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid params","data":{"payload":"range 9009594 is bigger than range limit 2000"}}}`
	if got := parseCapError([]byte(ans)); !got.IsCap || got.MaxRange != 2000 {
		t.Fatalf("data payload: %+v", got)
	}
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// Whatever the text, parsing never panics and a suggested range is ordered.
func FuzzParseCapText(f *testing.F) {
	f.Add("range 1000000 exceeds limit of 10000")
	f.Add("this block range should work: [0x0, 0x87fe9]")
	f.Add("up to a 2K block range [0xffffffffffffffffff, 0x1]")
	f.Add("limited to a 9,999,999,999,999,999,999,999 range")
	f.Fuzz(func(t *testing.T, text string) {
		c := parseCapText([]byte(strings.ToLower(text)))
		if c.Suggested && c.From > c.To {
			t.Fatalf("suggested [%d, %d]", c.From, c.To)
		}
	})
}

// A filter the gateway reads is written back with the same address and topics and the
// chunk's bounds, as valid JSON that reads back the same; anything else it leaves alone.
func FuzzParseFilter(f *testing.F) {
	f.Add(`[{"fromBlock":"0x0","toBlock":"latest","address":"0xaa","topics":[["0x1"],null]}]`)
	f.Add(`[{"blockHash":"0x00"}]`)
	f.Add(`[{"fromBlock":"safe","toBlock":"finalized"}]`)
	f.Add(`[{}]`)
	f.Fuzz(func(t *testing.T, params string) {
		var r proto.Request
		raw := `{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":` + params + `}`
		if r.Parse([]byte(raw)) != nil {
			return
		}
		fl, ok := parseFilter(r.Params)
		if !ok || fl.blockHash {
			return
		}
		out := fl.appendParams(nil, 5, 9)
		if !proto.Valid(out) {
			t.Fatalf("chunk params %s are not JSON (from %s)", out, r.Params)
		}
		back, ok := parseFilter(out)
		if !ok || back.from != 5 || back.to != 9 || string(back.address) != string(fl.address) || string(back.topics) != string(fl.topics) {
			t.Fatalf("chunk params %s read back as %+v", out, back)
		}
	})
}
