//go:build race

package logs

// raceEnabled: the race detector's shadow memory and slowdown would falsify a measurement.
const raceEnabled = true
