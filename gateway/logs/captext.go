package logs

import (
	"bytes"

	"github.com/infura-gateway/infura-gateway/proto"
)

// capError is what a provider's eth_getLogs error says about its cap, read from its
// text: whether it is a cap at all, the block range it names (0: none), and the range
// it suggests ([From, To], Suggested false: none).
type capError struct {
	IsCap     bool
	Results   bool   // a cap on results or response size: data-dependent, not learned as a block cap
	MaxRange  uint64 // blocks one call may cover, when the text names it
	Suggested bool
	From, To  uint64
}

// capPhrases mark an error as a provider's eth_getLogs cap (lower case). The texts come
// from providers' answers (see captext_test.go for each one and its source).
var capPhrases = []string{
	"returned more than",       // geth-style results cap, Infura, zkSync
	"response size exceeded",   // Alchemy
	"response is too big",      // zkSync
	"is limited to a",          // QuickNode
	"exceeds limit",            // Infura's block range
	"range limit",              // Tenderly
	"maximum block range",      // many geth forks ("exceed maximum block range: 5000")
	"block range is too wide",  // Frontier / Moonbeam
	"block range too high",     // others
	"block range is bigger",    // Scroll
	"range exceeds",            // "range exceeds 2000"
	"requests with up to a",    // Alchemy ("up to a 500 block range")
	"please reduce query",      // Alchemy
	"too many blocks",          // others
	"block range too large",    // others
	"block range is too large", // others
}

// resultPhrases mark a cap on results or bytes rather than blocks.
var resultPhrases = []string{"results", "response size", "too big", "logs in the response"}

// numberAfter are the phrases after which a text names its block cap.
var numberAfter = []string{
	"limit of ", "range limit ", "maximum block range: ", "maximum block range ", "(maximum ", "maximum ",
	"limited to a ", "up to a ", "range exceeds ", "exceeds ",
}

// parseCapError reads the error answer ans (an upstream's JSON-RPC error object answer).
func parseCapError(ans []byte) capError {
	e := proto.FirstMember(ans, "error")
	eb := e.Bytes(ans)
	msg := proto.FirstMember(eb, "message").Bytes(eb)
	text := bytes.ToLower(msg)
	// Some providers put the detail in data (a string, or an object with a payload).
	if d := proto.FirstMember(eb, "data"); d.Present() {
		text = append(append(text, ' '), bytes.ToLower(d.Bytes(eb))...)
	}
	return parseCapText(text)
}

// parseCapText reads a lower-case error text.
func parseCapText(text []byte) capError {
	var c capError
	if bytes.Contains(text, []byte("invalid block range params")) {
		return c // geth: fromBlock after toBlock, the query's own fault
	}
	for _, p := range capPhrases {
		if bytes.Contains(text, []byte(p)) {
			c.IsCap = true
			break
		}
	}
	if !c.IsCap {
		return c
	}
	for _, p := range resultPhrases {
		if bytes.Contains(text, []byte(p)) {
			c.Results = true
			break
		}
	}
	c.From, c.To, c.Suggested = suggestedRange(text)
	for _, p := range numberAfter {
		i := bytes.Index(text, []byte(p))
		if i < 0 {
			continue
		}
		if n, ok := leadingNumber(text[i+len(p):]); ok && n > 0 {
			// "more than 10000 results" names results, not blocks: only numbers followed by
			// a range or block word (or at the end) count as a block cap.
			c.MaxRange = n
			break
		}
	}
	if c.MaxRange > 0 && c.Results && !bytes.Contains(text, []byte("block range")) {
		c.MaxRange = 0
	}
	return c
}

// leadingNumber reads a number such as 2000, 10,000 or 2K at the start of s.
func leadingNumber(s []byte) (uint64, bool) {
	var n uint64
	digits := 0
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n > 1<<40 {
				return 0, false
			}
			n = n*10 + uint64(c-'0')
			digits++
		case c == ',' && digits > 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
		default:
			goto done
		}
	}
done:
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && s[i] == 'k' {
		n *= 1000
	}
	return n, true
}

// suggestedRange finds "[0x..., 0x...]" in text.
func suggestedRange(text []byte) (from, to uint64, ok bool) {
	for i := 0; i < len(text); i++ {
		if text[i] != '[' {
			continue
		}
		rest := text[i+1:]
		a, n := hexAt(rest)
		if n == 0 {
			continue
		}
		rest = bytes.TrimLeft(rest[n:], " ")
		if len(rest) == 0 || rest[0] != ',' {
			continue
		}
		rest = bytes.TrimLeft(rest[1:], " ")
		b, m := hexAt(rest)
		if m == 0 || m >= len(rest) || rest[m] != ']' || b < a {
			continue
		}
		return a, b, true
	}
	return 0, 0, false
}

// hexAt reads 0x and hex digits at the start of s: the value and the bytes read.
func hexAt(s []byte) (uint64, int) {
	if len(s) < 3 || s[0] != '0' || s[1] != 'x' {
		return 0, 0
	}
	var v uint64
	i := 2
	for ; i < len(s) && i < 18; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			if i == 2 {
				return 0, 0
			}
			return v, i
		}
	}
	if i == 2 {
		return 0, 0
	}
	return v, i
}
