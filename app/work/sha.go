package work

import (
	"crypto/sha256"
	"encoding/hex"
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
