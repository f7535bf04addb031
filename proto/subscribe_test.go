package proto

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func subscribeReq(params string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":` + params + `}`
}

const (
	addrLower  = "0x00000000000000000000000000000000000abcde"
	topicLower = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
)

// eth_subscribe params are parsed into one canonical form: the subscription's sharing
// key and what goes upstream.
func TestSubscribeParamsCanonical(t *testing.T) {
	cases := []struct{ in, want string }{
		{`["newHeads"]`, `["newHeads"]`},
		{`["new\u0048eads"]`, `["newHeads"]`},
		{`[ "newHeads" ]`, `["newHeads"]`},
		{`["newPendingTransactions",true]`, `["newPendingTransactions",true]`},
		{`["logs",{}]`, `["logs",{}]`},
		{`["logs"]`, `["logs"]`},
		{`["logs",{"topics":[["` + strings.ToUpper(topicLower[2:4]) + `"]],"address":"` + addrLower + `"}]`,
			`["logs",{"address":"` + addrLower + `","topics":[["` + strings.ToUpper(topicLower[2:4]) + `"]]}]`},
		// Keys as a node reads them (case-insensitively, escaped), sorted; hex values lower case.
		{`["logs",{"Topics":[null,"0X` + strings.ToUpper(topicLower[2:]) + `"],"ADDRESS":["0x` + strings.ToUpper(addrLower[2:]) + `"]}]`,
			`["logs",{"address":["` + addrLower + `"],"topics":[null,"` + topicLower + `"]}]`},
		{`["logs",{"\u0061ddress":"\u0030x` + addrLower[2:] + `","fromBlock":"l\u0061test"}]`,
			`["logs",{"address":"` + addrLower + `","fromBlock":"latest"}]`},
		// A key no node reads is not sent.
		{`["logs",{"address":"` + addrLower + `","extra":{"b":1,"a":2}}]`, `["logs",{"address":"` + addrLower + `"}]`},
		// Other kinds' options: strings decoded, keys sorted.
		{`["custom",{"b":"\u0078","a":1}]`, `["custom",{"a":1,"b":"x"}]`},
	}
	for _, c := range cases {
		var r Request
		if perr := r.Parse([]byte(subscribeReq(c.in))); perr != nil {
			t.Errorf("%s: %v", c.in, perr.Message)
			continue
		}
		if string(r.Params) != c.want {
			t.Errorf("%s: params %s, want %s", c.in, r.Params, c.want)
		}
	}
	// What the gateway cannot read is refused, not passed on for the node to read its way.
	for _, in := range []string{`[]`, `null`, `[1]`, `["new Heads"]`, `["newHeads\u0000"]`, `{"kind":"newHeads"}`,
		`["logs",{"address":"0x1","ADDRESS":"0x2"}]`, `["logs",{"address":"0x1","addreſs":"0x2"}]`,
		`["custom",{"a":1,"\u0061":2}]`} {
		var r Request
		if perr := r.Parse([]byte(subscribeReq(in))); perr == nil || perr.Code != CodeInvalidParams {
			t.Errorf("%s: %v, want -32602", in, perr)
		}
	}
	var r Request
	if perr := r.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"eth_subscribe"}`)); perr == nil || perr.Code != CodeInvalidParams {
		t.Errorf("eth_subscribe without params: %v, want -32602", perr)
	}
}

// respell writes the same JSON differently: characters inside strings become \u escapes
// (or \/), hex letters of 0x strings change case, a logs filter's keys change case.
func respell(s string, rng *rand.Rand) string {
	var b strings.Builder
	inString, hexStr, key := false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !inString {
			b.WriteByte(c)
			if c == '"' {
				inString = true
				hexStr = strings.HasPrefix(s[i+1:], "0x")
				j := i + 1 + strings.IndexByte(s[i+1:], '"') // the seeds' strings have no escapes
				switch s[i+1 : j] {
				case "address", "topics", "fromBlock":
					key = s[j+1] == ':' && strings.Contains(s[:i], `"logs"`)
				default:
					key = false
				}
			}
			continue
		}
		if c == '"' {
			inString = false
			b.WriteByte(c)
			continue
		}
		if hexStr && (c >= 'a' && c <= 'f' || c == 'x') && rng.IntN(2) == 0 {
			c ^= 0x20 // upper case
		}
		if key && rng.IntN(3) == 0 && c >= 'a' && c <= 'z' {
			c ^= 0x20
		}
		switch rng.IntN(4) {
		case 0:
			if rng.IntN(2) == 0 {
				fmt.Fprintf(&b, `\u%04x`, c)
			} else {
				fmt.Fprintf(&b, `\u%04X`, c)
			}
		case 1:
			if c == '/' {
				b.WriteString(`\/`)
				continue
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

var subscribeSeeds = []string{
	subscribeReq(`["newHeads"]`),
	subscribeReq(`["newPendingTransactions",true]`),
	subscribeReq(`["logs",{"address":"` + addrLower + `","topics":["` + topicLower + `",null,["` + topicLower + `"]]}]`),
	subscribeReq(`["logs",{"address":["` + addrLower + `"],"fromBlock":"latest"}]`),
	subscribeReq(`["syncing"]`),
}

// Random spellings of one eth_subscribe reach one state: the same decoded kind and the
// same canonical params, the key subscriptions are shared by.
func FuzzSubscribeEscapes(f *testing.F) {
	for i := range subscribeSeeds {
		f.Add(uint8(i), uint64(i)*7919)
	}
	f.Fuzz(func(t *testing.T, which uint8, seed uint64) {
		base := subscribeSeeds[int(which)%len(subscribeSeeds)]
		var want Request
		if perr := want.Parse([]byte(base)); perr != nil {
			t.Fatalf("%s: %v", base, perr.Message)
		}
		variant := respell(base, rand.New(rand.NewPCG(seed, seed>>7)))
		var got Request
		if perr := got.Parse([]byte(variant)); perr != nil {
			t.Fatalf("%s: %v", variant, perr.Message)
		}
		if string(got.Name) != string(want.Name) || string(got.Params) != string(want.Params) {
			t.Fatalf("%s\nparsed as %s %s\nwant      %s %s", variant, got.Name, got.Params, want.Name, want.Params)
		}
	})
}

// TestSubscribeEscapesSample runs many spellings in the ordinary test run.
func TestSubscribeEscapesSample(t *testing.T) {
	for i := range 2000 {
		base := subscribeSeeds[i%len(subscribeSeeds)]
		var want, got Request
		variant := respell(base, rand.New(rand.NewPCG(uint64(i), 1)))
		if perr := want.Parse([]byte(base)); perr != nil {
			t.Fatal(perr.Message)
		}
		if perr := got.Parse([]byte(variant)); perr != nil {
			t.Fatalf("%s: %v", variant, perr.Message)
		}
		if string(got.Params) != string(want.Params) {
			t.Fatalf("%s\nparsed as %s\nwant      %s", variant, got.Params, want.Params)
		}
	}
}
