package chat

import (
	"fmt"
	"testing"

	"github.com/tcplab/tcplab/frame"
)

// BenchmarkFanout measures the hub's cost of one room message to a room of
// n members: decode, parse, rate check, encode once, and one Conn.Write
// per member (into memory, so the sockets' cost is left out; the
// conformance suite and `tcplab bench` cover real connections).
//
//	go test ./app/chat -run '^$' -bench Fanout -benchmem
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			h, err := New(Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			conns := make([]*memConn, n)
			sessions := make([]*session, n)
			for i := range conns {
				conns[i] = &memConn{}
				sessions[i] = h.Open(conns[i]).(*session)
			}
			msg, _ := frame.Append(nil, frame.Length, 0, []byte("a message of about sixty-four bytes, which is a typical chat line"))
			sender := sessions[0]
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := sender.Data(msg); err != nil {
					b.Fatal(err)
				}
				if i%64 == 0 {
					for _, c := range conns {
						c.mu.Lock()
						c.out = c.out[:0]
						c.mu.Unlock()
					}
				}
			}
			b.StopTimer()
			for _, s := range sessions {
				s.Closed(nil)
			}
		})
	}
}
