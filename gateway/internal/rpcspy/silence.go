package rpcspy

import (
	"bytes"
	"encoding/json"
	"sync"
)

// Silencing subscriptions, as a provider that drops them with the socket open does
// (Infura, when the node behind a socket changes): the socket stays up and answers
// calls, the subscriptions it had get no more notifications, and subscriptions made
// after still do.

// subTracker follows the subscriptions made through one websocket: the ids of the
// eth_subscribe requests sent, and the subscription ids their answers gave.
type subTracker struct {
	mu      sync.Mutex
	pending map[string]bool // eth_subscribe request ids (raw JSON) not answered yet
}

// sent notes a client → node message.
func (t *subTracker) sent(msg []byte) {
	if !bytes.Contains(msg, []byte(`"eth_subscribe"`)) {
		return // most messages: not decoded twice
	}
	var req struct {
		ID     json.RawMessage
		Method string
	}
	if json.Unmarshal(msg, &req) != nil || req.Method != "eth_subscribe" {
		return
	}
	t.mu.Lock()
	if t.pending == nil {
		t.pending = map[string]bool{}
	}
	t.pending[string(req.ID)] = true
	t.mu.Unlock()
}

// received notes a node → client message and reports whether it goes through: a
// notification of a silenced subscription does not.
func (s *Spy) received(t *subTracker, msg []byte) bool {
	t.mu.Lock()
	waiting := len(t.pending) > 0
	t.mu.Unlock()
	if !waiting && !bytes.Contains(msg, []byte(`"eth_subscription"`)) {
		return true // most messages: a call's answer, never decoded
	}
	var m struct {
		ID     json.RawMessage
		Method string
		Result json.RawMessage
		Params struct{ Subscription string }
	}
	if json.Unmarshal(msg, &m) != nil {
		return true
	}
	if m.Method == "eth_subscription" {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.silenced[m.Params.Subscription] {
			s.dropped++
			return false
		}
		return true
	}
	var sub string
	if m.ID == nil || json.Unmarshal(m.Result, &sub) != nil {
		return true
	}
	t.mu.Lock()
	ours := t.pending[string(m.ID)]
	delete(t.pending, string(m.ID))
	t.mu.Unlock()
	if ours {
		s.mu.Lock()
		s.subs = append(s.subs, sub)
		s.mu.Unlock()
	}
	return true
}

// SilenceSubscriptions stops the notifications of every subscription made through the
// spy so far, on every socket, which stays open; later subscriptions are delivered. It
// returns how many it silenced.
func (s *Spy) SilenceSubscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.silenced == nil {
		s.silenced = map[string]bool{}
	}
	n := 0
	for _, sub := range s.subs {
		if !s.silenced[sub] {
			s.silenced[sub] = true
			n++
		}
	}
	return n
}

// Subscriptions returns how many subscriptions were made through the spy, and how
// many of them are silenced.
func (s *Spy) Subscriptions() (made, silenced int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs), len(s.silenced)
}

// DroppedNotifications returns how many notifications of silenced subscriptions the
// spy dropped.
func (s *Spy) DroppedNotifications() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}
