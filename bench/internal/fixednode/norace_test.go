//go:build !race

package fixednode

const raceEnabled = false
