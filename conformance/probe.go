package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// Probe returns a handler that exercises the seam itself, driven by text
// lines from the client, so every check works over the wire even when the
// session runs in another process:
//
//	burst G N SIZE  G goroutines each write N lines "g i pad..." of SIZE
//	                bytes, concurrently with each other (not from Data)
//	flood SIZE N    one goroutine writes N chunks of SIZE bytes of 'x'
//	end             the session closes with CloseWith("END\n")
//	fail            the session writes "failing\n" and returns an error
//	hold            the session stops consuming input
//	overrun         Data reports consuming one byte more than it was given
//	pause MS        the session writes "pausing\n", asks for a pause of
//	                reading of MS ms (handler.Flow) and returns, leaving the
//	                rest of its input for after the pause
//	ping            the session writes "pong\n"
//	queued          the session writes "queued N LIMIT\n": handler.Flow's
//	                Queued, taken before the line is written
//
// Its sessions implement handler.Farewell ("BYE <reason>\n"), and the
// handler implements handler.Refuser ("REFUSED <reason>\n") and
// handler.Counter (a command is a frame in, a pong a frame out).
func Probe() handler.Handler { return &probe{} }

type probe struct {
	in, out atomic.Uint64
}

func (p *probe) Open(c handler.Conn) handler.Session { return &probeSession{p: p, c: c} }

func (*probe) Refuse(reason error) []byte { return []byte("REFUSED " + reason.Error() + "\n") }

func (p *probe) Counts() handler.Counts {
	return handler.Counts{FramesIn: p.in.Load(), FramesOut: p.out.Load()}
}

type probeSession struct {
	p     *probe
	c     handler.Conn
	hold  bool
	yield bool // return from this Data call: a pause was asked
	wg    sync.WaitGroup
}

var (
	errProbeFail    = errors.New("probe asked to fail")
	errProbeEnd     = errors.New("probe asked to end")
	errProbeOverrun = errors.New("probe asked to overrun")
	errProbeNoFlow  = errors.New("probe: the Conn does not implement handler.Flow")
)

func (s *probeSession) Data(in []byte) (int, error) {
	used := 0
	defer func() { s.yield = false }()
	for !s.hold && !s.yield {
		i := bytes.IndexByte(in[used:], '\n')
		if i < 0 {
			break
		}
		line := string(in[used : used+i])
		used += i + 1
		if err := s.command(strings.Fields(line)); err != nil {
			if err == errProbeOverrun {
				return len(in) + 1, nil
			}
			return used, err
		}
	}
	return used, nil
}

func (s *probeSession) command(f []string) error {
	if len(f) == 0 {
		return nil
	}
	s.p.in.Add(1)
	nums := make([]int, len(f)-1)
	for i, a := range f[1:] {
		n, err := strconv.Atoi(a)
		if err != nil {
			return fmt.Errorf("probe: %q: %w", f, err)
		}
		nums[i] = n
	}
	switch {
	case f[0] == "burst" && len(nums) == 3:
		for g := range nums[0] {
			s.wg.Go(func() { s.burst(g, nums[1], nums[2]) })
		}
	case f[0] == "flood" && len(nums) == 2:
		s.wg.Go(func() {
			chunk := bytes.Repeat([]byte("x"), nums[0])
			for range nums[1] {
				if s.c.Write(chunk) != nil {
					return
				}
			}
		})
	case f[0] == "end":
		s.c.CloseWith([]byte("END\n"), errProbeEnd)
	case f[0] == "fail":
		s.c.Write([]byte("failing\n"))
		return errProbeFail
	case f[0] == "hold":
		s.hold = true
	case f[0] == "overrun":
		return errProbeOverrun
	case f[0] == "pause" && len(nums) == 1:
		fl, ok := s.c.(handler.Flow)
		if !ok {
			return errProbeNoFlow
		}
		s.c.Write([]byte("pausing\n"))
		fl.PauseReading(time.Duration(nums[0]) * time.Millisecond)
		s.yield = true
	case f[0] == "queued":
		fl, ok := s.c.(handler.Flow)
		if !ok {
			return errProbeNoFlow
		}
		n, limit := fl.Queued()
		s.c.Write(fmt.Appendf(nil, "queued %d %d\n", n, limit))
	case f[0] == "ping":
		if s.c.Write([]byte("pong\n")) == nil {
			s.p.out.Add(1)
		}
	default:
		return fmt.Errorf("probe: unknown command %q", f)
	}
	return nil
}

func (s *probeSession) burst(g, n, size int) {
	for i := range n {
		line := fmt.Appendf(nil, "%d %d ", g, i)
		line = append(line, bytes.Repeat([]byte("."), max(0, size-len(line)-1))...)
		if s.c.Write(append(line, '\n')) != nil {
			return
		}
	}
}

func (s *probeSession) Farewell(reason error) []byte {
	return []byte("BYE " + reason.Error() + "\n")
}

// Closed waits for the session's writer goroutines, which stop at their
// next Write now that the connection is closed.
func (s *probeSession) Closed(error) { s.wg.Wait() }
