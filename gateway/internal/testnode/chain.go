package testnode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// DevChainID is the chain id of geth --dev's own genesis, whatever --networkid says.
const DevChainID = 1337

// DevAddress is geth --dev's account on a fresh keystore: geth imports a fixed key
// (cmd/utils.DeveloperKey), so the address is known before the node first starts and a
// genesis of another chain can fund it.
const DevAddress = "0x71562b71999873db5b286df957af199ec94617f7"

// ChainID makes the node a dev chain with chain id id instead of 1337 (0 and 1337:
// geth's own dev genesis). geth --dev always builds a 1337 genesis, except on a data
// directory that already holds a chain: it then runs that chain if it is merged at
// genesis (terminalTotalDifficulty 0, difficulty 0). So the node gets a data directory
// (DataDir, else one in t.TempDir() for Start or os.MkdirTemp for Launch) initialised
// (`geth init`) with geth's dev genesis (`geth --dev dumpgenesis`) whose config.chainId is
// id and whose alloc funds DevAddress, and runs with --networkid id so net_version agrees.
// Blocks, the unlocked dev account and eth_sendTransaction work as on a 1337 node.
func ChainID(id uint64) Option {
	return func(n *Node) {
		if id == DevChainID {
			id = 0
		}
		n.chainID = id
	}
}

// ChainID returns the node's chain id.
func (n *Node) ChainID() uint64 {
	if n.chainID == 0 {
		return DevChainID
	}
	return n.chainID
}

// chainArgs are the flags a node of another chain adds to Args.
func (n *Node) chainArgs() []string {
	if n.chainID == 0 {
		return nil
	}
	return []string{"--networkid", strconv.FormatUint(n.chainID, 10)}
}

// initChain writes the genesis of chain n.chainID into n.datadir once: later starts
// (Resume, Restart, a Clone's copy) run on the chain already there.
func (n *Node) initChain() error {
	if n.chainID == 0 {
		return nil
	}
	if n.datadir == "" {
		return fmt.Errorf("testnode: chain id %d needs a data directory", n.chainID)
	}
	if _, err := os.Stat(filepath.Join(n.datadir, "geth", "chaindata")); err == nil {
		return nil
	}
	genesis, err := Genesis(n.bin, n.chainID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.datadir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(n.datadir, "genesis.json")
	if err := os.WriteFile(path, genesis, 0o600); err != nil {
		return err
	}
	out, err := exec.Command(n.bin, "init", "--datadir", n.datadir, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("geth init of chain %d: %w\n%s", n.chainID, err, out)
	}
	return nil
}

// Genesis returns the genesis JSON of a dev chain with chain id id: geth's own dev
// genesis (`geth --dev dumpgenesis` of the geth at bin: every fork at 0, merged at
// genesis) with config.chainId set to id and DevAddress funded.
func Genesis(bin string, id uint64) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--dev", "dumpgenesis")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("geth --dev dumpgenesis: %w\n%s", err, stderr.Bytes())
	}
	var g map[string]json.RawMessage
	if err := json.Unmarshal(out, &g); err != nil {
		return nil, fmt.Errorf("geth --dev dumpgenesis: %w", err)
	}
	var config map[string]json.RawMessage
	if err := json.Unmarshal(g["config"], &config); err != nil {
		return nil, fmt.Errorf("dev genesis config: %w", err)
	}
	config["chainId"] = json.RawMessage(strconv.FormatUint(id, 10))
	alloc := map[string]json.RawMessage{}
	if len(g["alloc"]) > 0 {
		if err := json.Unmarshal(g["alloc"], &alloc); err != nil {
			return nil, fmt.Errorf("dev genesis alloc: %w", err)
		}
	}
	// 2^255 wei: geth --dev funds its account with nearly 2^256; half leaves room for
	// any balance arithmetic.
	alloc[DevAddress[2:]] = json.RawMessage(`{"balance":"0x8000000000000000000000000000000000000000000000000000000000000000"}`)
	if g["config"], err = json.Marshal(config); err != nil {
		return nil, err
	}
	if g["alloc"], err = json.Marshal(alloc); err != nil {
		return nil, err
	}
	return json.Marshal(g)
}
