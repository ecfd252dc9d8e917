package engine_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/testkit"
)

// connsHandler hands every connection to the test, and its sessions
// consume whole lines, writing nothing.
type connsHandler struct{ conns chan handler.Conn }

func (h connsHandler) Open(c handler.Conn) handler.Session {
	h.conns <- c
	return lineSink{}
}

type lineSink struct{}

func (lineSink) Data(in []byte) (int, error) { return bytes.LastIndexByte(in, '\n') + 1, nil }
func (lineSink) Closed(error)                {}

// inProcess are the models whose sessions run in the test process.
var inProcess = []string{"seq", "goroutine", "thread", "pool", "reactor", "reactor-pool", "uring"}

// TestBoundCountsOnlyUnsentBytes writes 15 MiB to a connection bounded at
// 16 MiB whose client reads 6 MiB of it, then 4 MiB more from another
// goroutine: the bound counts what the socket has not taken (at most
// 9 MiB), so the write fits. A model that counted the whole batch in
// flight until its last byte was sent would close the connection as a
// slow consumer.
func TestBoundCountsOnlyUnsentBytes(t *testing.T) {
	const bound, first, read, second = 16 << 20, 15 << 20, 6 << 20, 4 << 20
	for _, model := range inProcess {
		t.Run(model, func(t *testing.T) {
			h := connsHandler{conns: make(chan handler.Conn, 1)}
			s := conformance.Start(t, model, h, engine.Config{MaxPending: bound, WriteTimeout: time.Minute})
			c := s.Dial(t)
			if err := c.SetReadBuffer(64 << 10); err != nil {
				t.Fatal(err)
			}
			var conn handler.Conn
			select {
			case conn = <-h.conns:
			case <-time.After(testkit.Bound):
				t.Fatal("the server did not open the connection")
			}
			if err := conn.Write(bytes.Repeat([]byte("a"), first)); err != nil {
				t.Fatalf("first write: %v", err)
			}
			c.SetDeadline(time.Now().Add(testkit.Bound))
			if _, err := io.ReadFull(c, make([]byte, read)); err != nil {
				t.Fatalf("reading %d bytes: %v", read, err)
			}
			if err := conn.Write(bytes.Repeat([]byte("b"), second)); err != nil {
				t.Fatalf("writing %d bytes with at most %d of %d unsent: %v", second, first-read, bound, err)
			}
			got, err := io.ReadAll(io.LimitReader(c, first+second-read))
			if err != nil || len(got) != first+second-read || bytes.Count(got, []byte("b")) != second {
				t.Fatalf("the rest: %d bytes (%d b), %v: want %d bytes ending in %d b", len(got), bytes.Count(got, []byte("b")), err, first+second-read, second)
			}
		})
	}
}

// TestReadBufferShrinksAfterALargeFrame sends one 1 MiB line on each of 40
// connections of a blocking model, consumed whole, and then checks the
// heap: a connection that keeps the buffer a large frame needed would
// hold at least 40 MiB between them (16 MiB is the bound here).
func TestReadBufferShrinksAfterALargeFrame(t *testing.T) {
	const conns, line = 40, 1 << 20
	h := connsHandler{conns: make(chan handler.Conn, conns)}
	// No frame timeout: the server reads the 40 lines side by side, so each
	// is complete only when nearly all 40 MiB are in, and on a loaded
	// machine (with the race detector) that takes longer than the default
	// 10 s, which would close connections mid-line.
	s := conformance.Start(t, "goroutine", h, engine.Config{FrameTimeout: -1})
	msg := append(bytes.Repeat([]byte("x"), line-1), '\n')
	var cs []net.Conn
	for range conns {
		c := s.Dial(t)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	// Wait until every line has been read and consumed, and the heap has
	// settled: a read buffer that shrinks does so right after its Data
	// call, so this is a wait for a condition, bounded, not a pause.
	testkit.Eventually(t, testkit.Bound, "every line is read and the heap settles under 16 MiB", func() error {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if s.Stats().BytesIn != conns*line || ms.HeapAlloc > 16<<20 {
			return fmt.Errorf("heap %d MiB with %d idle connections after one 1 MiB line each (server read %d of %d bytes; stats %+v): their read buffers were kept",
				ms.HeapAlloc>>20, len(cs), s.Stats().BytesIn, conns*line, s.Stats())
		}
		return nil
	})
}
