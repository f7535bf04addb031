// An eth_subscribe whose call timed out (its deadline, a client's, passed first) may
// still be answered: the node made the subscription. Nobody holds it any more (its
// waiters were answered with the timeout and the group dropped), and the answer names
// a call gone, so it was dropped: the node kept pushing that subscription's
// notifications, each dropped on arrival, for the socket's life, and a new attempt
// (the router's establish asks the same upstream again when it is the only carrier)
// made a second one. The socket remembers such calls and unsubscribes what their late
// answers made.

package upstream

import "github.com/infura-gateway/infura-gateway/proto"

// maxLate bounds the timed-out eth_subscribe calls a socket remembers: past it one is
// forgotten (its answer, if any, dropped as before).
const maxLate = 64

// lateLocked remembers gid, an eth_subscribe call that timed out. Called with s.mu held.
func (s *slot) lateLocked(gid uint64) {
	if s.late == nil {
		s.late = make(map[uint64]struct{})
	}
	if len(s.late) < maxLate {
		s.late[gid] = struct{}{}
	}
}

// answeredLate handles an answer for gid, a call no longer pending: when it answers a
// timed-out eth_subscribe with a subscription id, that subscription is unsubscribed.
func (s *slot) answeredLate(gid uint64, frame []byte, msg *proto.Message) {
	s.mu.Lock()
	_, late := s.late[gid]
	delete(s.late, gid)
	s.mu.Unlock()
	if late && msg.Result.Present() && frame[msg.Result.Start] == '"' {
		s.m.cfg.Logger.Debug("upstream websocket: unsubscribing a subscription answered after its call timed out")
		s.m.unsubscribeUpstream(s, string(msg.Result.Bytes(frame)))
	}
}
