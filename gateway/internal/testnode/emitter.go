package testnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// EmitterTopic is keccak256("Tick(uint256)") (geth's web3_sha3 computes it; the tests
// check), topic 0 of every log the emitter contract writes.
const EmitterTopic = "0x" + emitterTopic

const emitterTopic = "b8c95b3cea6303a753d912e243354ef08add1085ed07d34191514ef1001ef9d8"

// emitterCode is the emitter contract's code (52 bytes), written in EVM assembly: on
// every call it adds one to the counter in storage slot 0 and logs Tick(counter): LOG1
// with topic EmitterTopic and the new counter as 32 bytes of data. The first log of a
// contract carries 1, the next 2, and so on: a gap or a duplicate shows in the data
// alone.
//
//	60 00 54 60 01 01     PUSH1 0 SLOAD PUSH1 1 ADD      counter+1
//	80 60 00 55           DUP1 PUSH1 0 SSTORE            store it
//	60 00 52              PUSH1 0 MSTORE                 memory[0:32] = counter
//	7f <topic> 60 20 60 00 a1   PUSH32 topic PUSH1 32 PUSH1 0 LOG1
//	00                    STOP
const emitterCode = "0x600054600101" + "80600055" + "600052" + "7f" + emitterTopic + "60206000a1" + "00"

// emitterInit deploys emitterCode: CODECOPY the 52-byte runtime that follows these 11
// bytes to memory and RETURN it.
//
//	PUSH1 0x34 DUP1 PUSH1 0x0b PUSH1 0 CODECOPY PUSH1 0 RETURN
const emitterInit = "603480600b6000396000f3"

// DeployEmitter deploys the emitter contract from the dev account, waits until it is
// mined, checks its code, and returns its address.
func (n *Node) DeployEmitter(t testing.TB) string {
	t.Helper()
	tx := map[string]string{"from": n.DevAccount(t), "data": "0x" + emitterInit + emitterCode[2:]}
	var hash string
	if err := json.Unmarshal(n.Call(t, "eth_sendTransaction", tx), &hash); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	r, err := n.waitReceipt(hash, StartTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "0x1" || r.ContractAddress == "" {
		t.Fatalf("deploy receipt: status %s, address %q", r.Status, r.ContractAddress)
	}
	var code string
	if err := json.Unmarshal(n.Call(t, "eth_getCode", r.ContractAddress, "latest"), &code); err != nil || code != emitterCode {
		t.Fatalf("emitter code is %s (%v), want %s", code, err, emitterCode)
	}
	return r.ContractAddress
}

// Emit sends one transaction to the emitter contract at address and waits until it is
// mined; it returns the transaction hash and its block number.
func (n *Node) Emit(t testing.TB, address string) (txHash string, block uint64) {
	t.Helper()
	hash, err := n.sendEmit(n.DevAccount(t), address, "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := n.waitReceipt(hash, StartTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "0x1" || len(r.Logs) != 1 {
		t.Fatalf("emit receipt: status %s, %d logs", r.Status, len(r.Logs))
	}
	b, _ := ParseQuantity(r.BlockNumber)
	return hash, b
}

// sendEmit sends one emit transaction from from; nonce, when not empty, is its nonce
// (a quantity), otherwise geth picks the account's next pending one.
func (n *Node) sendEmit(from, address, nonce string) (string, error) {
	// No gas limit: geth estimates it on the latest state. The first call, which fills
	// a new storage slot, costs about 133,000 gas under the pinned geth's fork rules, later ones
	// less; the slot never returns to zero, so an estimate is never too low.
	tx := map[string]string{"from": from, "to": address}
	if nonce != "" {
		tx["nonce"] = nonce
	}
	res, err := n.call("eth_sendTransaction", tx)
	if err != nil {
		return "", fmt.Errorf("emit: %w", err)
	}
	var hash string
	if err := json.Unmarshal(res, &hash); err != nil {
		return "", fmt.Errorf("emit: %s: %w", res, err)
	}
	return hash, nil
}

type receipt struct {
	Status, BlockNumber, ContractAddress string
	Logs                                 []json.RawMessage
}

// waitReceipt polls (every 50 ms, up to within) for a transaction's receipt.
func (n *Node) waitReceipt(hash string, within time.Duration) (*receipt, error) {
	deadline := time.Now().Add(within)
	var nudges nudger
	for {
		res, err := n.call("eth_getTransactionReceipt", hash)
		// A fresh dev node answers "transaction indexing is in progress" for a moment.
		var rpcErr *RPCError
		if err != nil && !(errors.As(err, &rpcErr) && strings.Contains(rpcErr.Message, "indexing is in progress")) {
			return nil, fmt.Errorf("receipt of %s: %w", hash, err)
		}
		if err == nil && string(res) != "null" {
			var r receipt
			if err := json.Unmarshal(res, &r); err != nil {
				return nil, fmt.Errorf("receipt of %s: %s: %w", hash, res, err)
			}
			return &r, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("transaction %s not mined within %v (%d nudges)", hash, within, nudges.n)
		}
		n.nudge(&nudges)
		time.Sleep(50 * time.Millisecond) // waiting on the node's block production
	}
}

// TickCounter decodes the data of an emitter log (the counter, 32 bytes big-endian).
func TickCounter(data string) (uint64, error) {
	d := strings.TrimPrefix(data, "0x")
	if len(d) != 64 || strings.TrimLeft(d[:48], "0") != "" {
		return 0, fmt.Errorf("not a Tick counter: %q", data)
	}
	return ParseQuantity("0x" + d[48:])
}

// Emitter sends emit transactions to a contract periodically, from a goroutine, until
// Stop. It never fails the test itself: Stop reports what happened.
type Emitter struct {
	n        *Node
	from, to string
	stop     chan struct{}
	done     chan struct{}
	// nonce is the next transaction's: the emitter numbers its transactions itself.
	// geth's own choice (the pool's pending nonce) is updated only once the pool has
	// promoted the previous transaction, asynchronously: a send right after another
	// could get the same nonce and be refused as "already known" (geth issue 28502).
	nonce uint64

	mu     sync.Mutex
	sent   []string
	errors []error
}

// EmitterResult is what an Emitter did.
type EmitterResult struct {
	// Sent is the number of transactions the node accepted; each adds one log once
	// mined. LastTx is the last of them.
	Sent   int
	LastTx string
	// LastBlock is the block that holds LastTx: every sent transaction is mined at or
	// below it (one sender, consecutive nonces). 0 when nothing was sent.
	LastBlock uint64
	// Errors are the sends the node refused and a failure to see LastTx mined.
	Errors []error
}

// StartEmitter sends perTick emit transactions to the contract at address every
// interval (the first right away) until Stop; they are not waited for, so several
// land in one block. It is stopped when the test ends at the latest.
func (n *Node) StartEmitter(t testing.TB, address string, interval time.Duration, perTick int) *Emitter {
	t.Helper()
	e := &Emitter{n: n, from: n.DevAccount(t), to: address, stop: make(chan struct{}), done: make(chan struct{})}
	// The account's next nonce. Every transaction the test sent before is mined or at
	// least in the pool by now (Emit and DeployEmitter wait for the receipt), and none
	// is sent from the account while the emitter runs but the emitter's.
	var nonce string
	if err := json.Unmarshal(n.Call(t, "eth_getTransactionCount", e.from, "pending"), &nonce); err != nil {
		t.Fatalf("emitter nonce: %v", err)
	}
	var err error
	if e.nonce, err = ParseQuantity(nonce); err != nil {
		t.Fatalf("emitter nonce %q: %v", nonce, err)
	}
	go e.run(interval, perTick)
	t.Cleanup(func() { e.halt() })
	return e
}

func (e *Emitter) run(interval time.Duration, perTick int) {
	defer close(e.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for i := 0; i < perTick; i++ {
			hash, err := e.n.sendEmit(e.from, e.to, Quantity(e.nonce))
			e.mu.Lock()
			if err != nil {
				e.errors = append(e.errors, fmt.Errorf("%s: %w", time.Now().Format("15:04:05.000"), err))
			} else {
				e.sent = append(e.sent, hash)
				e.nonce++
			}
			e.mu.Unlock()
		}
		select {
		case <-e.stop:
			return
		case <-tick.C:
		}
	}
}

func (e *Emitter) halt() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.done
}

// Sent returns the number of transactions sent so far.
func (e *Emitter) Sent() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sent)
}

// Stop stops sending, waits (up to StartTimeout) until the last transaction sent is
// mined, and reports.
func (e *Emitter) Stop() EmitterResult {
	e.halt()
	e.mu.Lock()
	res := EmitterResult{Sent: len(e.sent), Errors: append([]error(nil), e.errors...)}
	if len(e.sent) > 0 {
		res.LastTx = e.sent[len(e.sent)-1]
	}
	e.mu.Unlock()
	if res.LastTx != "" {
		r, err := e.n.waitReceipt(res.LastTx, StartTimeout)
		if err != nil {
			res.Errors = append(res.Errors, err)
		} else {
			res.LastBlock, _ = ParseQuantity(r.BlockNumber)
		}
	}
	return res
}

// nudger counts the nudges of one wait for a receipt.
type nudger struct {
	n    int
	next time.Time
}

// nudgeAfter is how long a transaction may wait for its block on a node that mines only
// on transactions before nudge asks for one: geth seals in milliseconds when it does.
const nudgeAfter = 15 * time.Second

// nudge has a node that mines only on transactions (--dev.period 0) seal a block with
// what its pool holds, once nudgeAfter has passed since the wait began or the last
// nudge. geth's on-demand miner seals when its pool announces a transaction; one it
// was not told of waits for the next, and a test that sends one transaction and waits
// for it waits forever (once in a CI run on a loaded machine: a deployment on a fresh
// node not mined in 90 s). A zero withdrawal (geth's dev API) makes it seal without a
// transaction, so no account's nonces move.
func (n *Node) nudge(w *nudger) {
	now := time.Now()
	if n.period != 0 {
		return
	}
	if w.next.IsZero() {
		w.next = now.Add(nudgeAfter)
		return
	}
	if now.Before(w.next) {
		return
	}
	w.n++
	w.next = now.Add(nudgeAfter)
	_, _ = n.call("dev_addWithdrawal", map[string]string{"index": Quantity(uint64(w.n)), "validatorIndex": "0x0",
		"address": "0x000000000000000000000000000000000000dEaD", "amount": "0x0"})
}
