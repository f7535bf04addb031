package filters

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// criteria is a log filter as eth_newFilter takes it, checked as geth checks it
// (eth/filters FilterCriteria), kept in the canonical form the gateway asks
// eth_getLogs with.
type criteria struct {
	BlockHash string     `json:"blockHash,omitempty"`
	From      int64      `json:"from"` // a block number, or tagLatest
	To        int64      `json:"to"`
	Addresses []string   `json:"address,omitempty"`
	Topics    [][]string `json:"topics,omitempty"` // nil position: any topic
}

// tagLatest stands for "latest" (or no bound), as geth's rpc.LatestBlockNumber.
const (
	tagLatest    = -2
	tagPending   = -1
	tagFinalized = -3
	tagSafe      = -4
)

// maxCriteriaBytes bounds a filter's params: the state a filter keeps is bounded by it.
const maxCriteriaBytes = 16 << 10

const (
	maxTopics    = 4
	maxSubTopics = 1000
	maxAddresses = 1000
)

// parseCriteria reads eth_newFilter's params ([{...}]).
func parseCriteria(params []byte) (*criteria, error) {
	if len(params) > maxCriteriaBytes {
		return nil, invalidParams("filter criteria larger than " + strconv.Itoa(maxCriteriaBytes) + " bytes")
	}
	var args []json.RawMessage
	if err := json.Unmarshal(params, &args); err != nil || len(args) != 1 {
		return nil, invalidParams("want one filter object")
	}
	var raw struct {
		BlockHash *string         `json:"blockHash"`
		FromBlock *string         `json:"fromBlock"`
		ToBlock   *string         `json:"toBlock"`
		Addresses json.RawMessage `json:"address"`
		Topics    []any           `json:"topics"`
	}
	if err := json.Unmarshal(args[0], &raw); err != nil {
		return nil, argError(errors.New("want a filter object with string fields"))
	}
	c := &criteria{From: tagLatest, To: tagLatest}
	if raw.BlockHash != nil {
		if raw.FromBlock != nil || raw.ToBlock != nil {
			return nil, argError(errors.New("cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other"))
		}
		h, ok := hexBytes(*raw.BlockHash, 32)
		if !ok {
			return nil, argError(errors.New("invalid blockHash"))
		}
		c.BlockHash = h
	} else {
		var err error
		if raw.FromBlock != nil {
			if c.From, err = blockNumber(*raw.FromBlock); err != nil {
				return nil, argError(err)
			}
		}
		if raw.ToBlock != nil {
			if c.To, err = blockNumber(*raw.ToBlock); err != nil {
				return nil, argError(err)
			}
		}
	}
	if err := c.readAddresses(raw.Addresses); err != nil {
		return nil, argError(err)
	}
	if len(raw.Topics) > maxTopics {
		return nil, errMaxTopics
	}
	if err := c.readTopics(raw.Topics); err != nil {
		return nil, err
	}
	return c, nil
}

// argError is geth's answer to params it cannot read.
func argError(err error) *rpcError {
	return &rpcError{code: -32602, msg: "invalid argument 0: " + err.Error()}
}

func (c *criteria) readAddresses(v json.RawMessage) error {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	var one string
	if json.Unmarshal(v, &one) == nil {
		a, ok := hexBytes(one, 20)
		if !ok {
			return errors.New("invalid address")
		}
		c.Addresses = []string{a}
		return nil
	}
	var many []any
	if json.Unmarshal(v, &many) != nil {
		return errors.New("invalid addresses in query")
	}
	if len(many) > maxAddresses {
		return errors.New("exceed max addresses or topics per search position")
	}
	for i, x := range many {
		s, ok := x.(string)
		if !ok {
			return errors.New("non-string address at index " + strconv.Itoa(i))
		}
		a, ok := hexBytes(s, 20)
		if !ok {
			return errors.New("invalid address at index " + strconv.Itoa(i))
		}
		c.Addresses = append(c.Addresses, a)
	}
	return nil
}

var errInvalidTopic = argError(errors.New("invalid topic(s)"))

func (c *criteria) readTopics(raw []any) error {
	if len(raw) == 0 {
		return nil
	}
	c.Topics = make([][]string, len(raw))
	for i, t := range raw {
		switch t := t.(type) {
		case nil:
		case string:
			h, ok := hexBytes(t, 32)
			if !ok {
				return errInvalidTopic
			}
			c.Topics[i] = []string{h}
		case []any:
			if len(t) > maxSubTopics {
				return errMaxTopics
			}
			for _, x := range t {
				if x == nil { // a null alternative matches anything: the position is a wildcard
					c.Topics[i] = nil
					break
				}
				s, ok := x.(string)
				if !ok {
					return errInvalidTopic
				}
				h, ok := hexBytes(s, 32)
				if !ok {
					return errInvalidTopic
				}
				c.Topics[i] = append(c.Topics[i], h)
			}
		default:
			return errInvalidTopic
		}
	}
	return nil
}

// blockNumber reads a fromBlock/toBlock as geth's rpc.BlockNumber does.
func blockNumber(s string) (int64, error) {
	switch s {
	case "latest":
		return tagLatest, nil
	case "pending":
		return tagPending, nil
	case "finalized":
		return tagFinalized, nil
	case "safe":
		return tagSafe, nil
	case "earliest":
		return 0, nil
	}
	if len(s) < 3 || (s[:2] != "0x" && s[:2] != "0X") || (len(s) > 3 && s[2] == '0') {
		return 0, errors.New("hex string without 0x prefix, or with leading zero digits")
	}
	n, err := strconv.ParseUint(s[2:], 16, 63)
	if err != nil {
		return 0, errors.New("hex number > 63 bits")
	}
	return int64(n), nil
}

// hexBytes checks s is 0x and n bytes of hex, and returns it in lower case (how the
// gateway asks the upstream, and compares).
func hexBytes(s string, n int) (string, bool) {
	if len(s) != 2+2*n || (s[:2] != "0x" && s[:2] != "0X") {
		return "", false
	}
	for i := 2; i < len(s); i++ {
		c := s[i] | 0x20
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return "0x" + strings.ToLower(s[2:]), true
}

// check refuses ranges geth refuses at eth_newFilter (SubscribeLogs).
func (c *criteria) check() error {
	if c.BlockHash != "" {
		return nil
	}
	from, to := c.From, c.To
	switch {
	case from == tagPending || to == tagPending:
		return errPendingLogs
	case from == tagLatest && to == tagLatest,
		from >= 0 && to >= 0 && to >= from,
		from >= 0 && to == tagLatest:
		return nil
	}
	return errInvalidRange
}

// logsQuery is the eth_getLogs params for blocks from..to (or the filter's blockHash
// when byHash is set) with the filter's addresses and topics.
func (c *criteria) logsQuery(from, to uint64, blockHash string) []byte {
	q := struct {
		Address   []string   `json:"address,omitempty"`
		BlockHash string     `json:"blockHash,omitempty"`
		FromBlock string     `json:"fromBlock,omitempty"`
		ToBlock   string     `json:"toBlock,omitempty"`
		Topics    [][]string `json:"topics,omitempty"`
	}{Address: c.Addresses, Topics: c.Topics}
	if blockHash != "" {
		q.BlockHash = blockHash
	} else {
		q.FromBlock, q.ToBlock = quantity(from), quantity(to)
	}
	b, _ := json.Marshal([]any{q})
	return b
}

// filterLogsQuery is eth_getFilterLogs' eth_getLogs params: the filter's own range,
// tags as they were given.
func (c *criteria) filterLogsQuery() []byte {
	q := struct {
		Address   []string   `json:"address,omitempty"`
		BlockHash string     `json:"blockHash,omitempty"`
		FromBlock string     `json:"fromBlock,omitempty"`
		ToBlock   string     `json:"toBlock,omitempty"`
		Topics    [][]string `json:"topics,omitempty"`
	}{Address: c.Addresses, Topics: c.Topics, BlockHash: c.BlockHash}
	if c.BlockHash == "" {
		q.FromBlock, q.ToBlock = tagName(c.From), tagName(c.To)
	}
	b, _ := json.Marshal([]any{q})
	return b
}

func tagName(n int64) string {
	switch n {
	case tagLatest:
		return "latest"
	case tagPending:
		return "pending"
	case tagFinalized:
		return "finalized"
	case tagSafe:
		return "safe"
	}
	return quantity(uint64(n))
}

func quantity(n uint64) string { return "0x" + strconv.FormatUint(n, 16) }
