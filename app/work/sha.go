package work

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Sum applies SHA-256 n times (n >= 1): h1 = sha256(text), h(i+1) =
// sha256(h(i)). It returns hn. This is the work of "sha N TEXT"; a client
// checks a reply with it.
func Sum(n int, text []byte) [sha256.Size]byte {
	h := sha256.Sum256(text)
	for range n - 1 {
		h = sha256.Sum256(h[:])
	}
	return h
}

// AppendHex appends h in lower-case hexadecimal, as a sha reply carries it.
func AppendHex(dst []byte, h [sha256.Size]byte) []byte {
	return hex.AppendEncode(dst, h[:])
}

// calibrationRounds is the size of one timed batch in Calibrate: about
// 10 to 50 ms on current machines.
const calibrationRounds = 50_000

// Calibrate returns how many sha rounds take about d of CPU on this
// machine (at least 1), and the time one round took. It times a few
// batches of rounds and keeps the fastest, so a busy machine makes it
// err towards more rounds, not fewer. It takes roughly 5 batches' time
// (a few tens of milliseconds).
func Calibrate(d time.Duration) (rounds int, perRound time.Duration) {
	best := time.Duration(1<<63 - 1)
	var h [sha256.Size]byte
	for range 5 {
		start := time.Now()
		h = Sum(calibrationRounds, h[:])
		best = min(best, time.Since(start))
	}
	per := float64(best) / calibrationRounds
	return max(1, int(float64(d)/per)), time.Duration(per)
}
