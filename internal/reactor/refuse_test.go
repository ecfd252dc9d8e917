package reactor

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/handler"
)

// TestRefuseWhenOutOfDescriptors lowers this process's descriptor limit
// so that the server runs out after one connection. The next client must
// be refused at once, with the handler's refusal, rather than left in the
// listen backlog; once a descriptor is free again, clients are served.
func TestRefuseWhenOutOfDescriptors(t *testing.T) {
	models(t, func(t *testing.T, o options) {
		o.Loops = 1
		h := newLines(t)
		s := start(t, h, o)
		warm := dial(t, s) // the client side's poller and the loop are set up
		io.WriteString(warm, "ping\n")
		expectLine(t, bufio.NewReader(warm), "pong")

		// Leave exactly three descriptors: client 1, its server side, and
		// client 2. Client 2's server side does not fit.
		limitFreeDescriptors(t, 3)
		if o.model == Uring {
			// An armed multishot accept keeps the limit it was armed
			// with: arm it again under the new one.
			call(s.loops[0], ringOf(s.loops[0]).rearmAccepts)
		}

		c1 := dial(t, s)
		io.WriteString(c1, "ping\n")
		expectLine(t, bufio.NewReader(c1), "pong")

		c2 := dial(t, s)
		r2 := bufio.NewReader(c2)
		expectLine(t, r2, "REFUSED "+handler.ErrServerFull.Error())
		if _, err := r2.ReadByte(); err == nil {
			t.Fatal("a refused connection stayed open")
		}
		c2.Close()
		if st := s.Stats(); st.Refused != 1 || st.AcceptErrors == 0 {
			t.Fatalf("stats %+v: want 1 refused after accept errors", st)
		}

		// Client 1 leaves; its server side closes and the next client is
		// served.
		c1.Close()
		if reason := <-h.closed; reason != nil {
			t.Fatalf("client 1 closed with %v", reason)
		}
		c3 := dial(t, s)
		io.WriteString(c3, "ping\n")
		expectLine(t, bufio.NewReader(c3), "pong")
	})
}

// limitFreeDescriptors lowers the soft RLIMIT_NOFILE so that exactly n
// more descriptors can be opened, and restores it when the test ends.
func limitFreeDescriptors(t *testing.T, n int) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// The listing includes ReadDir's own descriptor, closed since: keep
	// only those still open.
	open := map[int]bool{}
	for _, e := range ents {
		if _, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			fd, _ := strconv.Atoi(e.Name())
			open[fd] = true
		}
	}
	limit, free := 0, 0
	for ; free < n; limit++ {
		if !open[limit] {
			free++
		}
	}
	lim := unix.Rlimit{Cur: uint64(limit), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}
