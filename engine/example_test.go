package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// shout is a user-written protocol: it answers each line in upper case.
type shout struct {
	conn handler.Conn
	dec  *frame.Decoder
}

func (s *shout) Data(in []byte) (int, error) {
	used := 0
	for {
		line, n, err := s.dec.Decode(in[used:])
		if err != nil {
			return used, err
		}
		if n == 0 {
			return used, nil // wait for the rest of the line
		}
		used += n
		reply, _ := frame.Append(nil, frame.Line, 0, bytes.ToUpper(line))
		s.conn.Write(reply)
	}
}

func (s *shout) Closed(error) {}

// Run your own handler on any model: only the model name changes.
func Example() {
	h := handler.Func(func(c handler.Conn) handler.Session {
		dec, _ := frame.NewDecoder(frame.Line, 1024)
		return &shout{conn: c, dec: dec}
	})
	for _, model := range []string{"seq", "goroutine"} {
		srv, err := engine.Listen(model, h, engine.Config{Addr: "127.0.0.1:0"})
		if err != nil {
			fmt.Println(err)
			return
		}
		go srv.Serve()

		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Fprintf(c, "hello from %s\n", model)
		reply, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print(reply)
		c.Close()
		srv.Shutdown(context.Background())
	}
	// Output:
	// HELLO FROM SEQ
	// HELLO FROM GOROUTINE
}
