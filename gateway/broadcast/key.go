package broadcast

import (
	"net/http"

	"github.com/infura-gateway/infura-gateway/proto"
)

var sendRawTransaction = proto.MethodNamed("eth_sendRawTransaction")

// errTooManyArgs is geth's refusal of eth_sendRawTransaction with more than the raw
// transaction, word for word (and, as geth answers it, over HTTP 200).
var errTooManyArgs = proto.NewError(proto.CodeInvalidParams, http.StatusOK, "too many arguments, want at most 1")

// dedupeKey names the dedupe record of a send of the transaction hashed h. A plain
// eth_sendRawTransaction is keyed by the hash alone (the key every replica has used);
// any other configured send by its method, the hash and its further params (canonical
// bytes, as Parse left them), so a send with other options (a condition, a relay's
// preferences) is never answered from another send's record. Params that differ only
// in spelling (member order, escapes) get two records: both broadcast, the second
// answered "already known" by the nodes, which is safe. eth_sendRawTransaction takes
// exactly one param, as geth checks: more is refused before anything is claimed.
func dedupeKey(req *proto.Request, h *[32]byte) ([32]byte, error) {
	it, err := proto.NewArrayIter(req.Params)
	if err != nil { // TxHash read an array: not reached
		return *h, proto.ErrRawTx
	}
	_, _, _ = it.Next() // the raw transaction, hashed as h
	el, more, err := it.Next()
	if req.Method == sendRawTransaction {
		if more || err != nil {
			return *h, errTooManyArgs
		}
		return *h, nil
	}
	var k proto.Keccak
	k.Write(req.Name)
	k.AbsorbByte(0)
	k.Write(h[:])
	for ; more && err == nil; el, more, err = it.Next() {
		k.AbsorbByte(',')
		k.Write(el.Bytes(req.Params))
	}
	if err != nil {
		return *h, proto.ErrRawTx
	}
	return k.Sum256(), nil
}
