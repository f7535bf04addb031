// Package fixednode is a fixed-answer Ethereum JSON-RPC node for benchmarks.
//
// It answers a handful of methods with canned results, echoing request ids
// byte-for-byte, over HTTP and websocket. It is the CPU floor of the
// benchmark suite: the eth_blockNumber path does no allocation and no JSON
// decoding (see rpcscan). It is never a stand-in for a real node in
// correctness tests: it does not validate params and has no chain.
package fixednode

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/infura-gateway/infura-gateway/bench/internal/rpcscan"
)

// Method indexes for the per-method request counters.
const (
	mBlockNumber = iota
	mGasPrice
	mChainID
	mGetBlockByNumber
	mGetTxByBlockNumberAndIndex
	mSubscribe
	mUnsubscribe
	mNetVersion
	mClientVersion
	mOther
	mInvalid
	numMethods
)

var methodNames = [numMethods]string{
	"eth_blockNumber", "eth_gasPrice", "eth_chainId", "eth_getBlockByNumber",
	"eth_getTransactionByBlockNumberAndIndex", "eth_subscribe", "eth_unsubscribe",
	"net_version", "web3_clientVersion", "other", "invalid",
}

// Fixed answers. Results are raw JSON values.
var (
	resGasPrice      = []byte(`"0x3b9aca00"`)
	resChainID       = []byte(`"0x1"`)
	resNetVersion    = []byte(`"1"`)
	resClientVersion = []byte(`"fixednode/v1"`)
	resTrue          = []byte(`true`)
	resFalse         = []byte(`false`)
	resNull          = []byte(`null`)

	errMethodNotFound = []byte(`{"code":-32601,"message":"the method does not exist/is not available"}`)
	errNoNotify       = []byte(`{"code":-32601,"message":"notifications not supported"}`)
	errBadSubscribe   = []byte(`{"code":-32602,"message":"fixednode supports only newHeads subscriptions"}`)
	errInvalidReq     = []byte(`{"code":-32600,"message":"invalid request"}`)

	replyParseError = []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`)
	replyEmptyBatch = []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"empty batch"}}`)

	prefixID     = []byte(`{"jsonrpc":"2.0","id":`)
	infixResult  = []byte(`,"result":`)
	infixError   = []byte(`,"error":`)
	ctJSON       = []byte("application/json")
	newHeadsName = []byte(`"newHeads"`)
)

// perHeadKeep bounds the per-head history in /counts.
const perHeadKeep = 120

// head is one immutable snapshot of the chain head; a new one is swapped in
// per head so request paths read it with a single atomic load.
type head struct {
	num       uint64
	numResult []byte // `"0x..."`, the eth_blockNumber answer
	block     []byte // eth_getBlockByNumber with tx hashes
	blockFull []byte // eth_getBlockByNumber with full transactions
	tx        []byte // eth_getTransactionByBlockNumberAndIndex
	header    []byte // newHeads payload
}

func newHead(num uint64) *head {
	return &head{
		num:       num,
		numResult: []byte(hexQ(num)),
		block:     blockJSON(num, false),
		blockFull: blockJSON(num, true),
		tx:        []byte(txJSON(num, 0)),
		header:    headerJSON(num),
	}
}

// Node is the fixed-answer node. The zero value is not usable: call New.
type Node struct {
	cur     atomic.Pointer[head]
	counts  [numMethods]atomic.Uint64
	heads   atomic.Uint64
	batches atomic.Uint64
	nextSub atomic.Uint64

	mu    sync.Mutex // guards conns
	conns map[*wsConn]struct{}

	// perHead records, for the last perHeadKeep head intervals, how many
	// eth_gasPrice calls each interval received: the probe the suite uses
	// to see how well the gateway coalesces per head.
	perHeadMu   sync.Mutex
	perHead     []uint64
	lastGasSeen uint64

	bufPool  sync.Pool
	upgrader websocket.FastHTTPUpgrader
}

// New returns a node whose head is block startBlock.
func New(startBlock uint64) *Node {
	n := &Node{conns: make(map[*wsConn]struct{})}
	n.cur.Store(newHead(startBlock))
	n.bufPool.New = func() any { b := make([]byte, 0, 4096); return &b }
	n.upgrader = websocket.FastHTTPUpgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		CheckOrigin:     func(*fasthttp.RequestCtx) bool { return true },
	}
	return n
}

// HeadNumber returns the current head block number.
func (n *Node) HeadNumber() uint64 { return n.cur.Load().num }

// Advance produces a new head: eth_blockNumber increments and every newHeads
// subscriber gets a notification.
func (n *Node) Advance() {
	g := n.counts[mGasPrice].Load()
	n.perHeadMu.Lock()
	n.perHead = append(n.perHead, g-n.lastGasSeen)
	if len(n.perHead) > perHeadKeep {
		n.perHead = n.perHead[len(n.perHead)-perHeadKeep:]
	}
	n.lastGasSeen = g
	n.perHeadMu.Unlock()
	h := newHead(n.cur.Load().num + 1)
	n.cur.Store(h)
	n.heads.Add(1)
	n.notifyHeads(h)
}

// RunHeads advances the head every interval until stop is closed.
func (n *Node) RunHeads(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			n.Advance()
		}
	}
}

// session is the per-connection state a websocket message may touch. HTTP
// requests have none.
type session struct {
	c *wsConn
	// newSubs are subscriptions created while handling the current message.
	// They start receiving notifications only after the reply carrying their
	// id has been written, as a real node guarantees.
	newSubs []uint64
}

// Process appends the reply to the JSON-RPC message req (single or batch) to
// dst. It appends nothing when no reply is due (notifications only).
func (n *Node) Process(dst, req []byte, s *session) []byte {
	i := rpcscan.SkipSpace(req, 0)
	if i >= len(req) {
		n.counts[mInvalid].Add(1)
		return append(dst, replyParseError...)
	}
	if req[i] != '[' {
		var m rpcscan.Message
		if rpcscan.ParseObject(req, i, &m) < 0 {
			n.counts[mInvalid].Add(1)
			return append(dst, replyParseError...)
		}
		return n.reply(dst, &m, s)
	}
	n.batches.Add(1)
	start := len(dst)
	dst = append(dst, '[')
	empty, replies := true, 0
	ok := rpcscan.EachElem(req, i, func(elem []byte) {
		empty = false
		var m rpcscan.Message
		mark := len(dst)
		if replies > 0 {
			dst = append(dst, ',')
		}
		before := len(dst)
		if rpcscan.ParseObject(elem, 0, &m) < 0 {
			n.counts[mInvalid].Add(1)
			dst = append(dst, prefixID...)
			dst = append(dst, "null"...)
			dst = append(dst, infixError...)
			dst = append(dst, errInvalidReq...)
			dst = append(dst, '}')
		} else {
			dst = n.reply(dst, &m, s)
		}
		if len(dst) == before {
			dst = dst[:mark] // a notification: no element, no comma
			return
		}
		replies++
	})
	switch {
	case !ok:
		n.counts[mInvalid].Add(1)
		return append(dst[:start], replyParseError...)
	case empty:
		n.counts[mInvalid].Add(1)
		return append(dst[:start], replyEmptyBatch...)
	case replies == 0:
		return dst[:start]
	}
	return append(dst, ']')
}

// reply appends the answer to one request object; nothing for a
// notification (a request without id).
func (n *Node) reply(dst []byte, m *rpcscan.Message, s *session) []byte {
	h := n.cur.Load()
	var result, rpcErr []byte
	switch string(m.Method) {
	case "eth_blockNumber":
		n.counts[mBlockNumber].Add(1)
		result = h.numResult
	case "eth_gasPrice":
		n.counts[mGasPrice].Add(1)
		result = resGasPrice
	case "eth_chainId":
		n.counts[mChainID].Add(1)
		result = resChainID
	case "eth_getBlockByNumber":
		n.counts[mGetBlockByNumber].Add(1)
		result = blockFor(h, m.Params)
	case "eth_getTransactionByBlockNumberAndIndex":
		n.counts[mGetTxByBlockNumberAndIndex].Add(1)
		result = h.tx
		if blockAfterHead(h, rpcscan.ArrayElem(m.Params, 0)) {
			result = resNull
		}
	case "eth_subscribe":
		n.counts[mSubscribe].Add(1)
		switch {
		case s == nil:
			rpcErr = errNoNotify
		case string(rpcscan.ArrayElem(m.Params, 0)) != string(newHeadsName):
			rpcErr = errBadSubscribe
		default:
			id := n.nextSub.Add(1)
			s.newSubs = append(s.newSubs, id)
			dst = appendReplyHead(dst, m.ID, infixResult)
			dst = appendSubID(dst, id)
			return append(dst, '}')
		}
	case "eth_unsubscribe":
		n.counts[mUnsubscribe].Add(1)
		if s == nil {
			rpcErr = errNoNotify
		} else if s.c.unsubscribe(rpcscan.ArrayElem(m.Params, 0)) {
			result = resTrue
		} else {
			result = resFalse
		}
	case "net_version":
		n.counts[mNetVersion].Add(1)
		result = resNetVersion
	case "web3_clientVersion":
		n.counts[mClientVersion].Add(1)
		result = resClientVersion
	case "":
		n.counts[mInvalid].Add(1)
		rpcErr = errInvalidReq
	default:
		n.counts[mOther].Add(1)
		rpcErr = errMethodNotFound
	}
	if m.ID == nil {
		return dst
	}
	if rpcErr != nil {
		dst = appendReplyHead(dst, m.ID, infixError)
		dst = append(dst, rpcErr...)
	} else {
		dst = appendReplyHead(dst, m.ID, infixResult)
		dst = append(dst, result...)
	}
	return append(dst, '}')
}

func appendReplyHead(dst, id, infix []byte) []byte {
	dst = append(dst, prefixID...)
	if id == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, id...)
	}
	return append(dst, infix...)
}

func appendSubID(dst []byte, id uint64) []byte {
	dst = append(dst, `"0x`...)
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(id>>uint(shift))&0xf])
	}
	return append(dst, '"')
}

// blockFor answers eth_getBlockByNumber: the head block for any tag or any
// number up to the head (the node keeps no history), null past the head.
func blockFor(h *head, params []byte) []byte {
	if blockAfterHead(h, rpcscan.ArrayElem(params, 0)) {
		return resNull
	}
	if string(rpcscan.ArrayElem(params, 1)) == "true" {
		return h.blockFull
	}
	return h.block
}

// blockAfterHead reports whether the block parameter is a hex number above
// the head.
func blockAfterHead(h *head, p []byte) bool {
	if len(p) < 4 || p[0] != '"' || p[1] != '0' || (p[2] != 'x' && p[2] != 'X') {
		return false
	}
	var v uint64
	for _, c := range p[3 : len(p)-1] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint64(c-'A'+10)
		default:
			return false
		}
	}
	return v > h.num
}

// ServeHTTP is the fasthttp handler: POST (any path) is JSON-RPC, a
// websocket upgrade (any path) is JSON-RPC over websocket, GET /counts
// reports the counters and POST /head advances the head.
func (n *Node) ServeHTTP(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch {
	case ctx.IsPost() && string(path) == "/head":
		n.Advance()
		ctx.SetContentTypeBytes(ctJSON)
		ctx.Response.AppendBody(n.cur.Load().numResult)
	case ctx.IsPost():
		bp := n.bufPool.Get().(*[]byte)
		out := n.Process((*bp)[:0], ctx.PostBody(), nil)
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.Response.AppendBody(out)
		*bp = out
		n.bufPool.Put(bp)
	case websocket.FastHTTPIsWebSocketUpgrade(ctx):
		if err := n.upgrader.Upgrade(ctx, n.serveWS); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadRequest)
		}
	case string(path) == "/counts":
		ctx.SetContentTypeBytes(ctJSON)
		b, _ := json.Marshal(n.Counts())
		ctx.Response.AppendBody(b)
	case string(path) == "/health":
		ctx.SetBodyString("ok")
	default:
		ctx.Error("fixednode: POST JSON-RPC to any path, GET /counts, POST /head", fasthttp.StatusNotFound)
	}
}

// Counts is the GET /counts document.
type Counts struct {
	Heads         uint64            `json:"heads"`
	HeadNumber    uint64            `json:"head_number"`
	Batches       uint64            `json:"batches"`
	Requests      uint64            `json:"requests"`
	Methods       map[string]uint64 `json:"methods"`
	WSConnections int               `json:"ws_connections"`
	Subscriptions int               `json:"subscriptions"`
	// GasPricePerHead lists eth_gasPrice calls received during each of the
	// last head intervals, oldest first (the current interval excluded).
	GasPricePerHead []uint64 `json:"gas_price_per_head"`
}

// Counts snapshots the counters.
func (n *Node) Counts() Counts {
	c := Counts{
		Heads:      n.heads.Load(),
		HeadNumber: n.cur.Load().num,
		Batches:    n.batches.Load(),
		Methods:    make(map[string]uint64, numMethods),
	}
	for i := range n.counts {
		v := n.counts[i].Load()
		c.Methods[methodNames[i]] = v
		c.Requests += v
	}
	n.perHeadMu.Lock()
	c.GasPricePerHead = append([]uint64{}, n.perHead...)
	n.perHeadMu.Unlock()
	n.mu.Lock()
	c.WSConnections = len(n.conns)
	for wc := range n.conns {
		c.Subscriptions += wc.subCount()
	}
	n.mu.Unlock()
	return c
}

// Server returns a fasthttp server tuned for being cheap: no Server header,
// no per-request name work, generous concurrency for 10k-connection runs.
func (n *Node) Server() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               n.ServeHTTP,
		Name:                  "fixednode",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		Concurrency:           1 << 20,
		ReadBufferSize:        8192,
		MaxRequestBodySize:    32 << 20,
		IdleTimeout:           2 * time.Minute,
	}
}
