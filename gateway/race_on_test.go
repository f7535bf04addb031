//go:build race

package gateway

// raceDetector: the tests run with -race (5-10× slower goroutines).
const raceDetector = true
