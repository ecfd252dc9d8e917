package handler_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// lookup stands for a call that waits: a database, another service.
func lookup(key string) string {
	time.Sleep(10 * time.Millisecond)
	return strings.ToUpper(key)
}

// store answers "get KEY" with what lookup says, and "ping" with "pong".
type store struct{ c handler.Conn }

func (s *store) Data(in []byte) (int, error) {
	used := 0
	for {
		i := bytes.IndexByte(in[used:], '\n')
		if i < 0 {
			return used, nil
		}
		line := string(in[used : used+i]) // a copy: in is gone after Data
		used += i + 1
		if key, ok := strings.CutPrefix(line, "get "); ok {
			handler.Offload(s.c, func() {
				s.c.Write([]byte(key + "=" + lookup(key) + "\n"))
			})
			return used, nil // the lines after it wait for its reply
		}
		s.c.Write([]byte("pong\n"))
	}
}

func (s *store) Closed(error) {}

// A session moves the step that waits off the event loop with Offload:
// on reactor (one loop here) the loop serves other connections meanwhile,
// and this connection's replies still come in the order of its requests.
func ExampleOffload() {
	h := handler.Func(func(c handler.Conn) handler.Session { return &store{c: c} })
	srv, err := engine.Listen("reactor", h, engine.Config{
		Addr: "127.0.0.1:0", Loops: 1, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())

	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Fprint(c, "get a\nping\nget b\nping\n")
	r := bufio.NewReader(c)
	for range 4 {
		line, _ := r.ReadString('\n')
		fmt.Print(line)
	}
	// Output:
	// a=A
	// pong
	// b=B
	// pong
}
