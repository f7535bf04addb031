package testnode

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The harness itself: a node starts, mines a transaction, and comes back after a crash
// on the same ports.
func TestNodeLifecycle(t *testing.T) {
	n := Start(t)
	if got := string(n.Call(t, "eth_chainId")); got != `"0x539"` {
		t.Fatalf("eth_chainId = %s, want 0x539 (1337)", got)
	}
	hash, block := n.SendTx(t)
	if !strings.HasPrefix(hash, "0x") || !strings.HasPrefix(block, "0x") {
		t.Fatalf("SendTx = %q, %q", hash, block)
	}
	url := n.HTTPURL
	n.Restart(t)
	if n.HTTPURL != url {
		t.Fatalf("restart moved the node: %s -> %s", url, n.HTTPURL)
	}
	if got := string(n.Call(t, "eth_chainId")); got != `"0x539"` {
		t.Fatalf("after restart eth_chainId = %s", got)
	}
}

// geth --dev without a data directory makes its keystore in $TMPDIR and removes it only
// on a graceful exit; the harness kills it, so each node gets a TMPDIR of its own that
// goes with the process: nothing is left behind by a crash (Kill, Restart) or a stop.
func TestNodeLeavesNoTempFiles(t *testing.T) {
	for _, end := range []struct {
		name string
		do   func(*Node)
	}{
		{"killed", func(n *Node) { n.Kill() }},
		{"restarted", func(n *Node) { n.Restart(t) }},
		{"stopped", func(n *Node) { n.Stop(t) }},
	} {
		t.Run(end.name, func(t *testing.T) {
			n := Start(t, Period(0))
			n.mu.Lock()
			scratch := n.scratch
			n.mu.Unlock()
			keystores, err := filepath.Glob(filepath.Join(scratch, "go-ethereum-keystore*"))
			if err != nil || len(keystores) != 1 {
				t.Fatalf("geth's keystore in its TMPDIR %s: %v %v, want one", scratch, keystores, err)
			}
			end.do(n)
			if _, err := os.Stat(scratch); !os.IsNotExist(err) {
				t.Fatalf("geth's TMPDIR %s after it exited: %v, want it removed", scratch, err)
			}
		})
	}
}

// A chain in a data directory survives a graceful stop; a clone on a copy shares every
// block up to the copy and keeps that head with Period(0) while the leader advances;
// CatchUp levels them again.
func TestLaggingNode(t *testing.T) {
	leader, lagging := StartLagging(t)
	if leader.HTTPURL == lagging.HTTPURL || leader.DataDir() == lagging.DataDir() {
		t.Fatalf("leader and lagging share %s / %s", leader.HTTPURL, leader.DataDir())
	}
	if a, b := leader.DevAccount(t), lagging.DevAccount(t); a != b {
		t.Fatalf("dev accounts differ: %s, %s", a, b)
	}
	copied := lagging.BlockNumber(t)
	if copied < 1 {
		t.Fatalf("lagging head %d: the copy should hold the mined transaction's block", copied)
	}
	leader.WaitBlock(t, copied+3) // three blocks, three seconds at Period 1
	if got := lagging.BlockNumber(t); got != copied {
		t.Fatalf("lagging head moved from %d to %d", copied, got)
	}
	for h := uint64(0); h <= copied; h++ {
		if a, b := leader.BlockHash(t, h), lagging.BlockHash(t, h); a == "" || a != b {
			t.Fatalf("block %d: leader %s, lagging %s", h, a, b)
		}
	}
	if h := lagging.BlockHash(t, copied+1); h != "" {
		t.Fatalf("lagging has block %d: %s", copied+1, h)
	}

	lagging.CatchUp(t, leader)
	level := lagging.BlockNumber(t)
	if level < copied+3 {
		t.Fatalf("after CatchUp lagging head %d, leader was at %d or more", level, copied+3)
	}
	if a, b := leader.BlockHash(t, level), lagging.BlockHash(t, level); a != b {
		t.Fatalf("after CatchUp block %d: leader %s, lagging %s", level, a, b)
	}
	leader.WaitBlock(t, level+1) // the leader mines on after its restart
}

// Stop persists the head; Kill loses what was mined since the last graceful stop.
func TestDataDirStopAndKill(t *testing.T) {
	n := Start(t, DataDir(t.TempDir()+"/chain"))
	h := n.WaitBlock(t, 2)
	hash := n.BlockHash(t, h)
	n.Stop(t)
	n.Resume(t)
	if got := n.BlockNumber(t); got < h {
		t.Fatalf("after Stop/Resume head %d < %d", got, h)
	}
	if got := n.BlockHash(t, h); got != hash {
		t.Fatalf("after Stop/Resume block %d is %s, was %s", h, got, hash)
	}
	stopped := n.BlockNumber(t)
	n.WaitBlock(t, stopped+2)
	lost := n.BlockHash(t, stopped+2)
	n.Restart(t) // SIGKILL
	n.WaitBlock(t, stopped+2)
	if got := n.BlockHash(t, stopped+2); got == lost {
		t.Fatalf("block %d survived a kill: %s (expected it lost and mined again, differently)", stopped+2, got)
	}
	if got := n.BlockHash(t, stopped); got == "" {
		t.Fatalf("block %d, persisted by the graceful stop, is gone after a kill", stopped)
	}
}

// The emitter contract logs Tick(1), Tick(2), ... one per call, several per block when
// StartEmitter sends a few per tick, and the node's eth_getLogs returns them all.
func TestEmitter(t *testing.T) {
	n := Start(t)
	var topic string
	if err := json.Unmarshal(n.Call(t, "web3_sha3", "0x"+hex.EncodeToString([]byte("Tick(uint256)"))), &topic); err != nil || topic != EmitterTopic {
		t.Fatalf("keccak256(Tick(uint256)) = %s (%v), EmitterTopic = %s", topic, err, EmitterTopic)
	}
	addr := n.DeployEmitter(t)
	_, first := n.Emit(t, addr)

	e := n.StartEmitter(t, addr, 100*time.Millisecond, 3)
	deadline := time.Now().Add(StartTimeout)
	for e.Sent() < 12 {
		if time.Now().After(deadline) {
			t.Fatalf("emitter sent %d transactions in %v", e.Sent(), StartTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling the emitter's progress
	}
	res := e.Stop()
	if len(res.Errors) > 0 || res.LastBlock < first {
		t.Fatalf("emitter: %+v", res)
	}
	var logs []struct {
		BlockNumber, BlockHash, TransactionHash, LogIndex, Data string
		Topics                                                  []string
	}
	filter := map[string]any{"fromBlock": "0x0", "toBlock": Quantity(res.LastBlock), "address": addr, "topics": []any{[]string{EmitterTopic}}}
	if err := json.Unmarshal(n.Call(t, "eth_getLogs", filter), &logs); err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1+res.Sent {
		t.Fatalf("%d logs, want %d (1 + %d sent)", len(logs), 1+res.Sent, res.Sent)
	}
	perBlock := map[string]int{}
	for i, l := range logs {
		c, err := TickCounter(l.Data)
		if err != nil || c != uint64(i+1) || len(l.Topics) != 1 || l.Topics[0] != EmitterTopic {
			t.Fatalf("log %d: counter %d (%v), topics %v", i, c, err, l.Topics)
		}
		perBlock[l.BlockNumber]++
	}
	if logs[len(logs)-1].TransactionHash != res.LastTx {
		t.Fatalf("last log from %s, last sent %s", logs[len(logs)-1].TransactionHash, res.LastTx)
	}
	most := 0
	for _, c := range perBlock {
		most = max(most, c)
	}
	if most < 2 {
		t.Fatalf("no block holds two logs: %v", perBlock)
	}
}

// Two nodes at once answer two chain ids: geth's dev chain and one started with
// ChainID, each producing blocks, its dev account funded and unlocked (a transaction is
// mined), net_version agreeing with the chain id, and the chain id kept across a
// graceful stop.
func TestSecondChain(t *testing.T) {
	nodes := []struct {
		name      string
		opts      []Option
		chainID   string // eth_chainId
		networkID string // net_version
	}{
		{"dev", nil, `"0x539"`, `"1337"`},
		{"dev 1337 explicitly", []Option{ChainID(DevChainID)}, `"0x539"`, `"1337"`},
		{"sepolia-like", []Option{ChainID(11155111)}, `"0xaa36a7"`, `"11155111"`},
	}
	started := make([]*Node, len(nodes))
	for i, tc := range nodes {
		started[i] = Start(t, tc.opts...)
	}
	for i, tc := range nodes {
		t.Run(tc.name, func(t *testing.T) {
			n := started[i]
			if got := string(n.Call(t, "eth_chainId")); got != tc.chainID {
				t.Fatalf("eth_chainId = %s, want %s", got, tc.chainID)
			}
			if got := string(n.Call(t, "net_version")); got != tc.networkID {
				t.Fatalf("net_version = %s, want %s", got, tc.networkID)
			}
			if got := Quantity(n.ChainID()); `"`+got+`"` != tc.chainID {
				t.Fatalf("ChainID() = %s, want %s", got, tc.chainID)
			}
			if acc := n.DevAccount(t); !strings.EqualFold(acc, DevAddress) {
				t.Fatalf("dev account %s, want %s", acc, DevAddress)
			}
			h := n.BlockNumber(t)
			n.WaitBlock(t, h+2) // Period 1: a block a second
			if _, block := n.SendTx(t); block == "" {
				t.Fatal("no block for the transaction")
			}
		})
	}
	second := started[2]
	second.Stop(t)
	second.Resume(t)
	if got := string(second.Call(t, "eth_chainId")); got != `"0xaa36a7"` {
		t.Fatalf("after Stop/Resume eth_chainId = %s", got)
	}
	second.WaitBlock(t, second.BlockNumber(t)+1)
}
