package bench

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/load"
)

// BenchmarkPresenceStorm fills one chat room with 9,000 members, then has
// one of them post 200 messages, with the presence limit off (every join
// goes to every member already there: n² JOIN frames) and at its default
// (1,000 members), on reactor (one loop) and goroutine. The server runs
// pinned to CPU 0 (GOMAXPROCS=1), the members in this process on CPU 1.
//
//	go test ./bench/ -run '^$' -bench PresenceStorm
//
// It prints, per run: the time from the first connect until the last
// member had joined (its /ping answered: it was in the room), the frames
// the members received in all and how many of them were presence (JOIN,
// LEAVE, NOTICE), the messages delivered (9,000 x 200 less the sender's
// own), and the server's peak RSS (VmHWM). It needs ulimit -n above
// 9,100 for this process and the server.
func BenchmarkPresenceStorm(b *testing.B) {
	if lim, _, err := load.RaiseNofile(); err != nil || lim < stormMembers+200 {
		b.Skipf("needs ulimit -n >= %d; have %d (%v)", stormMembers+200, lim, err)
	}
	loadOnCPU1(b)
	fmt.Fprintf(os.Stdout, "%s: load average %s at the start\n", b.Name(), loadAverage())
	bin := buildBinary(b, "tcplab")
	var rows []string
	for _, m := range []server{pinnedModels[0], pinnedModels[2]} { // reactor, goroutine

		for _, limit := range []int{0, 1000} {
			name := fmt.Sprintf("%s/presence-limit-%d", m.name, limit)
			b.Run(name, func(b *testing.B) {
				r := presenceStorm(b, bin, m.args, limit)
				rows = append(rows, fmt.Sprintf("| %s | %d | %v | %d | %d | %d | %.0f MiB |",
					m.name, limit, r.joined.Round(time.Millisecond), r.frames, r.presence, r.msgs, float64(r.peakRSS)/(1<<20)))
			})
		}
	}
	fmt.Fprintf(os.Stdout, "%s: %d members join one room, then one posts %d messages:\n"+
		"| model | --presence-limit | last member joined after | frames received | of them presence | messages delivered | server peak RSS |\n"+
		"|---|---|---|---|---|---|---|\n%s\n", b.Name(), stormMembers, stormMessages, strings.Join(rows, "\n"))
}

const (
	stormMembers  = 9000
	stormMessages = 200
)

// stormResult is what one storm measured.
type stormResult struct {
	joined                 time.Duration
	frames, presence, msgs int64
	peakRSS                int64
}

// stormMember is one member's connection and what it has received.
type stormMember struct {
	c      net.Conn
	pong   chan struct{}
	msgs   atomic.Int64
	done   chan struct{} // closed when the reader ends
	frames int64         // the reader's counts, read after done
	pres   int64
	err    error
}

// read counts c's frames until the connection ends.
func (m *stormMember) read() {
	defer close(m.done)
	r, err := frame.NewReader(m.c, frame.Length, 0)
	if err != nil {
		m.err = err
		return
	}
	for {
		p, err := r.Next()
		if err != nil {
			return
		}
		m.frames++
		switch {
		case bytes.HasPrefix(p, []byte("MSG ")):
			m.msgs.Add(1)
		case bytes.HasPrefix(p, []byte("JOIN ")), bytes.HasPrefix(p, []byte("LEAVE ")), bytes.HasPrefix(p, []byte("NOTICE ")):
			m.pres++
		case bytes.Equal(p, []byte("PONG")):
			m.pong <- struct{}{}
		case bytes.HasPrefix(p, []byte("BYE ")):
			m.err = fmt.Errorf("the server closed a member: %s", p)
			return
		}
	}
}

// presenceStorm runs one storm on a fresh server of bin with args and the
// presence limit.
func presenceStorm(b *testing.B, bin string, args []string, limit int) stormResult {
	srv := startPinnedGo(b, bin, append([]string{"serve", "--app", "chat", "--addr", "127.0.0.1:0", "--backlog", "4096",
		"--msg-rate", "0", "--max-conns", strconv.Itoa(stormMembers + 100), "--presence-limit", strconv.Itoa(limit)}, args...)...)
	srv.Pin(b, 0)
	ping, err := frame.Append(nil, frame.Length, 0, []byte("/ping"))
	if err != nil {
		b.Fatal(err)
	}
	members := make([]*stormMember, stormMembers)
	var readers sync.WaitGroup
	defer func() {
		for _, m := range members {
			if m != nil {
				m.c.Close()
			}
		}
		readers.Wait()
	}()
	start := time.Now()
	parallel(b, stormMembers, func(i int) error {
		c, err := dial(srv.Addr, i)
		if err != nil {
			return err
		}
		m := &stormMember{c: c, pong: make(chan struct{}, 1), done: make(chan struct{})}
		members[i] = m
		readers.Go(m.read)
		if _, err := c.Write(ping); err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		select {
		case <-m.pong:
			return nil
		case <-m.done:
			return fmt.Errorf("member %d: connection ended before PONG: %v", i, m.err)
		case <-time.After(time.Minute):
			return fmt.Errorf("member %d: no PONG within a minute", i)
		}
	})
	joined := time.Since(start)

	var out []byte
	for i := range stormMessages {
		if out, err = frame.Append(out, frame.Length, 0, []byte("storm "+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := members[0].c.Write(out); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, m := range members[1:] {
		for m.msgs.Load() < stormMessages {
			if time.Now().After(deadline) {
				b.Fatalf("a member got %d of the %d messages within 5 minutes", m.msgs.Load(), stormMessages)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Every member's /ping was answered after its own join, and every
	// message after every join: the presence frames are all in.
	for _, m := range members {
		if _, err := m.c.Write(ping); err != nil {
			b.Fatal(err)
		}
		<-m.pong
	}
	r := stormResult{joined: joined, peakRSS: srv.PeakRSS(b)}
	for _, m := range members {
		m.c.Close()
		<-m.done
		if m.err != nil {
			b.Fatal(m.err)
		}
		r.frames += m.frames
		r.presence += m.pres
		r.msgs += m.msgs.Load()
	}
	b.ReportMetric(joined.Seconds(), "s-to-join")
	b.ReportMetric(float64(r.frames), "frames")
	b.ReportMetric(float64(r.presence), "presence-frames")
	b.ReportMetric(float64(r.peakRSS)/(1<<20), "peak-MiB")
	return r
}
