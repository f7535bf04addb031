package fixednode

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// txPerBlock matches a typical mainnet block of the post-merge era, so the
// eth_getBlockByNumber answers have realistic sizes (~10 KB with hashes,
// ~130 KB with full transactions).
const txPerBlock = 150

// hash32 returns a deterministic 0x-prefixed 32-byte hex string; the fixed
// node has no chain, only plausible-looking data.
func hash32(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "0x" + hex.EncodeToString(h.Sum(nil))
}

func hexQ(n uint64) string { return `"0x` + strconv.FormatUint(n, 16) + `"` }

// headFields are the members shared by a block and a newHeads notification,
// in geth's order.
func headFields(num uint64) string {
	ts := uint64(1_700_000_000) + num*12
	return `"baseFeePerGas":"0x3b9aca00","blobGasUsed":"0x60000","difficulty":"0x0",` +
		`"excessBlobGas":"0x0","extraData":"0x6265617665726275696c642e6f7267",` +
		`"gasLimit":"0x1c9c380","gasUsed":"0xe4e1c0",` +
		`"hash":"` + hash32("block", strconv.FormatUint(num, 10)) + `",` +
		`"logsBloom":"0x` + bloom(num) + `",` +
		`"miner":"0x95222290dd7278aa3ddd389cc1e1d165cc4bafe5",` +
		`"mixHash":"` + hash32("mix", strconv.FormatUint(num, 10)) + `",` +
		`"nonce":"0x0000000000000000","number":` + hexQ(num) + `,` +
		`"parentBeaconBlockRoot":"` + hash32("beacon", strconv.FormatUint(num, 10)) + `",` +
		`"parentHash":"` + hash32("block", strconv.FormatUint(num-1, 10)) + `",` +
		`"receiptsRoot":"` + hash32("receipts", strconv.FormatUint(num, 10)) + `",` +
		`"requestsHash":"0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",` +
		`"sha3Uncles":"0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",` +
		`"stateRoot":"` + hash32("state", strconv.FormatUint(num, 10)) + `",` +
		`"timestamp":` + hexQ(ts) + `,` +
		`"transactionsRoot":"` + hash32("txroot", strconv.FormatUint(num, 10)) + `",` +
		`"withdrawalsRoot":"` + hash32("wroot", strconv.FormatUint(num, 10)) + `"`
}

// bloom returns 256 bytes of hex: a dense bloom filter like mainnet's.
func bloom(num uint64) string {
	var out []byte
	for i := 0; len(out) < 512; i++ {
		out = append(out, hash32("bloom", strconv.FormatUint(num, 10), strconv.Itoa(i))[2:]...)
	}
	return string(out[:512])
}

// txJSON renders the transaction at index idx of block num as geth does for
// an EIP-1559 transaction.
func txJSON(num uint64, idx int) string {
	n, i := strconv.FormatUint(num, 10), strconv.Itoa(idx)
	return `{"blockHash":"` + hash32("block", n) + `","blockNumber":` + hexQ(num) +
		`,"from":"0x` + hash32("from", i)[2:42] + `","gas":"0x5208","gasPrice":"0x4a817c800",` +
		`"maxFeePerGas":"0x6fc23ac00","maxPriorityFeePerGas":"0x3b9aca00",` +
		`"hash":"` + hash32("tx", n, i) + `","input":"0x","nonce":` + hexQ(uint64(idx)*7+1) +
		`,"to":"0x` + hash32("to", i)[2:42] + `","transactionIndex":` + hexQ(uint64(idx)) +
		`,"value":"0xde0b6b3a7640000","type":"0x2","accessList":[],"chainId":"0x1","v":"0x1",` +
		`"r":"` + hash32("r", n, i) + `","s":"` + hash32("s", n, i) + `","yParity":"0x1"}`
}

// blockJSON renders block num with transaction hashes (full=false) or full
// transaction objects (full=true).
func blockJSON(num uint64, full bool) []byte {
	b := []byte("{" + headFields(num) + `,"size":"0x1d4c0","totalDifficulty":"0xc70d815d562d3cfa955","transactions":[`)
	n := strconv.FormatUint(num, 10)
	for i := 0; i < txPerBlock; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		if full {
			b = append(b, txJSON(num, i)...)
		} else {
			b = append(b, '"')
			b = append(b, hash32("tx", n, strconv.Itoa(i))...)
			b = append(b, '"')
		}
	}
	b = append(b, `],"uncles":[],"withdrawals":[`...)
	for i := 0; i < 16; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`+hexQ(num*16+uint64(i))+`,"validatorIndex":`+hexQ(400000+uint64(i))+
			`,"address":"0x`+hash32("wd", strconv.Itoa(i))[2:42]+`","amount":"0x11a5b3f"}`...)
	}
	b = append(b, "]}"...)
	return b
}

// headerJSON renders the newHeads notification payload for block num.
func headerJSON(num uint64) []byte {
	return []byte("{" + headFields(num) + "}")
}
