package upstream

// connUp records a socket coming up.
func (m *Mux) connUp() {
	m.metrics.wsConns.Add(1)
	m.metrics.up[TransportWS].Store(true)
	m.once.Do(func() { close(m.ready) })
}

// connDown records a socket going down; the transport is down when none is left.
func (m *Mux) connDown() {
	if m.metrics.wsConns.Add(-1) == 0 {
		m.metrics.up[TransportWS].Store(false)
	}
}
