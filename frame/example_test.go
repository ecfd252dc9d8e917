package frame_test

import (
	"fmt"
	"strings"

	"github.com/tcplab/tcplab/frame"
)

// A Decoder is fed whatever bytes have arrived: it returns whole frames and
// how many bytes they took, and the caller keeps the rest for the next
// call, with more bytes after it (as a handler.Session's Data does).
func ExampleDecoder() {
	dec, err := frame.NewDecoder(frame.Line, 0)
	if err != nil {
		panic(err)
	}
	var pending []byte
	for _, arrived := range []string{"hel", "lo\r\nwor", "ld\n"} {
		pending = append(pending, arrived...)
		for {
			payload, n, err := dec.Decode(pending)
			if err != nil {
				panic(err)
			}
			if n == 0 {
				break // no whole frame yet: wait for more bytes
			}
			fmt.Printf("%q\n", payload)
			pending = pending[n:]
		}
	}
	// Output:
	// "hello"
	// "world"
}

// Append frames a payload; a Reader reads frames from a stream.
func ExampleAppend() {
	var wire []byte
	for _, msg := range []string{"one", "two"} {
		var err error
		if wire, err = frame.Append(wire, frame.Length, 0, []byte(msg)); err != nil {
			panic(err)
		}
	}
	r, err := frame.NewReader(strings.NewReader(string(wire)), frame.Length, 0)
	if err != nil {
		panic(err)
	}
	for {
		payload, err := r.Next()
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Printf("%s\n", payload)
	}
	// Output:
	// one
	// two
	// EOF
}
