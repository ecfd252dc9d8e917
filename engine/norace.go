//go:build !race

package engine

// raceEnabled reports a binary built with the race detector (see race.go).
const raceEnabled = false
