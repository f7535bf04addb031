// Package failover holds the gateway's failover tests against real nodes: several
// upstreams over geth --dev behind toxiproxy (faults) and rpcspy (per-upstream call
// records), a truly lagging node, subscriptions moved between upstreams, writes
// through failing upstreams, and the hedging measurement of issue 9. It has no code
// of its own: everything is in its tests, which use the gateway's exported API only
// (config.Load, gateway.New, /status and /metrics on the admin listener).
package failover
