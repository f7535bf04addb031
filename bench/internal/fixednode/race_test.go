//go:build race

package fixednode

// The race detector makes sync.Pool drop items at random, so allocation
// counts through the pool are only meaningful without it.
const raceEnabled = true
