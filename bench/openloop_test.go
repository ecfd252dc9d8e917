package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkOpenLoop measures the servers below saturation: an open-loop
// ping-pong at fixed rates (5k, 20k and 60k round trips/s), 100
// connections, 64-byte messages, in two arrival patterns:
//
//	spread  each connection sends at rate/100 per second on its own phase,
//	        the phases evenly spaced: one message every 1/rate
//	bursts  the same rate, but every connection sends on the same tick:
//	        100 messages at once every 100/rate (20 ms at 5k, 5 ms at
//	        20k, 1.7 ms at 60k)
//
// Each server runs in its own process pinned to CPU 0 (GOMAXPROCS=1, one
// loop for reactor and uring); this process, the load, is pinned to CPU
// 1 and sends from one thread with its own epoll and the kernel's
// high-resolution timers, so arrivals are where the schedule puts them.
// All servers run side by side, and each case measures them one after
// the other (case-major), so a ratio to C compares figures measured
// seconds apart. One op is one round trip; per server and case it
// reports
//
//	server-us/rt  the server's CPU (user+system, all its threads, from its
//	              process CPU clock, in ns) per round trip
//	cs/rt         the server's context switches (voluntary and involuntary,
//	              over /proc/PID/task/*/status) per round trip: how often
//	              its threads slept and woke, a figure the machine's
//	              load hardly moves
//	p99-us        the 99th percentile latency from a message's write to its
//	              echo's read (a burst's includes the load's own time to
//	              write the burst)
//	rt/s          the rate achieved
//
// Then it leaves 1,000 connections open on every server for 10 s (idle)
// and measures each server's CPU and context switches meanwhile. It ends
// with a table of every case: CPU per round trip, its ratio to the C
// server's in the same run, p99, context switches per round trip; and the
// idle figures. Run with a few seconds per case (the first run of a case
// is short, as the benchmark framework sizes it):
//
//	go test ./bench/ -run '^$' -bench OpenLoop -benchtime 3s
//
// With -v it also logs, per case and server, the context switches of
// each of the server's threads. With TCPLAB_BENCH_BASE (see baseEnv) each
// tcplab server runs on both builds, old, new, old, new, and the run ends
// with the new build's CPU per round trip as a ratio to the old's.
func BenchmarkOpenLoop(b *testing.B) {
	loadOnCPU1(b)
	models, servers := serversUnderTest(b)
	var running []*runningServer
	for _, s := range servers {
		srv, skip := tryStart(b, s)
		if skip != "" {
			fmt.Fprintf(os.Stdout, "%s: %s not run: %s\n", b.Name(), s.name, skip)
			continue
		}
		srv.Pin(b, 0)
		running = append(running, &runningServer{server: s, child: srv})
	}
	got := map[string]openResult{} // by server name + "/" + case
	for _, oc := range openCases {
		b.Run(oc.String(), func(b *testing.B) {
			for _, rs := range running {
				b.Run(rs.name, func(b *testing.B) {
					got[rs.name+"/"+oc.String()] = openLoop(b, rs.child, oc)
				})
			}
		})
	}
	idle := map[string]idleResult{}
	b.Run("idle", func(b *testing.B) { idle = idleServers(b, running) })
	fmt.Fprint(os.Stdout, openTable(b.Name(), running, got, idle))
	var keys []string
	cpu := map[string]float64{}
	for _, oc := range openCases {
		keys = append(keys, oc.String())
		for _, rs := range running {
			if r, ok := got[rs.name+"/"+oc.String()]; ok {
				cpu[rs.name+"/"+oc.String()] = r.cpuPerRT
			}
		}
	}
	if ab := abRatios(cpu, models, keys, "us"); ab != "" {
		fmt.Fprintf(os.Stdout, "%s: server CPU per round trip (us), this build against %s, means of two rounds:%s\n",
			b.Name(), baseEnv, ab)
	}
}

// openCase is one rate in one arrival pattern.
type openCase struct {
	bursts bool
	rate   int // round trips per second
}

func (oc openCase) String() string {
	p := "spread"
	if oc.bursts {
		p = "bursts"
	}
	return fmt.Sprintf("%s-%dk", p, oc.rate/1000)
}

var openCases = []openCase{
	{false, 5000}, {false, 20000}, {false, 60000},
	{true, 5000}, {true, 20000}, {true, 60000},
}

const (
	openConns  = 100                    // connections per case
	openMsg    = 64                     // bytes per message
	openWarm   = 500 * time.Millisecond // the pattern runs this long before a case is measured
	idleConns  = 1000                   // connections held open while idle
	idleFor    = 10 * time.Second       // how long the idle servers are measured
	fifoDepth  = 4096                   // messages a connection may have unanswered
	maxPending = 2 * time.Second        // how long the end of a case waits for the last echoes
)

// runningServer is a server of the run, started.
type runningServer struct {
	server
	child *child
}

// openResult is what one case measured of one server.
type openResult struct {
	cpuPerRT float64 // µs
	csPerRT  float64
	p99      time.Duration
	rate     float64 // achieved round trips per second
}

// idleResult is what the idle phase measured of one server.
type idleResult struct {
	cpuPct float64 // % of a CPU
	csPerS float64
}

// openLoop runs case oc against srv and returns its figures.
func openLoop(b *testing.B, srv *child, oc openCase) openResult {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// The kernel's default 50 µs timer slack would merge the spread
	// pattern's sends at high rates.
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		b.Fatalf("prctl PR_SET_TIMERSLACK: %v", err)
	}
	ld, err := newOpenLoad(srv.Addr, openConns, oc)
	if err != nil {
		b.Fatal(err)
	}
	defer ld.close()
	// Warm up: the pattern runs for openWarm, then every echo is in.
	for ld.now() < int64(openWarm) {
		if err := ld.send(); err != nil {
			b.Fatal(err)
		}
	}
	if err := ld.drain(); err != nil {
		b.Fatal(err)
	}
	ld.restart()
	cpu0, cs0 := srv.CPUTime(b), srv.Switches(b)
	var threads0 map[int]int64
	if testing.Verbose() {
		threads0 = srv.ThreadSwitches(b)
	}
	for b.Loop() {
		if err := ld.send(); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := ld.now()
	if err := ld.drain(); err != nil {
		b.Fatal(err)
	}
	cpu, cs := srv.CPUTime(b)-cpu0, srv.Switches(b)-cs0
	n := float64(ld.sent)
	r := openResult{
		cpuPerRT: float64(cpu.Nanoseconds()) / 1e3 / n,
		csPerRT:  float64(cs) / n,
		p99:      ld.p99(),
		rate:     n / (float64(elapsed) / 1e9),
	}
	b.ReportMetric(r.cpuPerRT, "server-us/rt")
	b.ReportMetric(r.csPerRT, "cs/rt")
	b.ReportMetric(float64(r.p99.Nanoseconds())/1e3, "p99-us")
	b.ReportMetric(r.rate, "rt/s")
	if testing.Verbose() {
		b.Logf("latency %s; sends late by %s", quantiles(ld.lat), quantiles(ld.late))
	}
	if threads0 != nil {
		b.Logf("context switches per thread (tid, its system call now: count) over %d round trips: %s",
			ld.sent, threadDiff(srv.Pid, threads0, srv.ThreadSwitches(b)))
	}
	return r
}

// openLoad is an open-loop ping-pong client on one thread: non-blocking
// sockets, its own epoll instance, and epoll_pwait2's nanosecond timeout
// to wait for the next send. Message m goes to connection m mod n at its
// due time; a connection's echoes come back in order, so each 64 bytes
// read answers its oldest unanswered message.
type openLoad struct {
	oc      openCase
	epfd    int
	fds     []int
	pending []fifo // per connection: the send times of unanswered messages
	partial []int  // per connection: bytes read of the next echo
	start   time.Time
	m       int64 // the next message
	sent    int64 // messages sent since restart
	since   int   // messages sent since the last poll
	lat     []int64
	late    []int64 // how late each send was
	events  []unix.EpollEvent
	buf     []byte
	msg     [openMsg]byte
}

// fifo is a ring of send times.
type fifo struct {
	t          [fifoDepth]int64
	head, tail int
}

func newOpenLoad(addr string, n int, oc openCase) (*openLoad, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	ld := &openLoad{oc: oc, epfd: epfd, pending: make([]fifo, n), partial: make([]int, n),
		events: make([]unix.EpollEvent, n), buf: make([]byte, 64<<10)}
	for i := range n {
		fd, err := rawDial(ap)
		if err != nil {
			ld.close()
			return nil, err
		}
		ld.fds = append(ld.fds, fd)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			ld.close()
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	ld.restart()
	return ld, nil
}

// rawDial connects a non-blocking socket with TCP_NODELAY to ap.
func rawDial(ap netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %v: %w", ap, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set non-blocking: %w", err)
	}
	return fd, nil
}

func (ld *openLoad) close() {
	for _, fd := range ld.fds {
		unix.Close(fd)
	}
	unix.Close(ld.epfd)
}

// restart starts the schedule and the counts afresh.
func (ld *openLoad) restart() {
	ld.start, ld.m, ld.sent, ld.lat, ld.late = time.Now(), 0, 0, ld.lat[:0], ld.late[:0]
}

// now is the time since restart, in ns.
func (ld *openLoad) now() int64 { return int64(time.Since(ld.start)) }

// due is when message m is to be sent, in ns since restart.
func (ld *openLoad) due(m int64) int64 {
	n := int64(len(ld.fds))
	period := n * int64(time.Second) / int64(ld.oc.rate) // each connection's
	at := m / n * period
	if !ld.oc.bursts {
		at += m % n * period / n
	}
	return at
}

// send waits for the next message's due time, reading echoes meanwhile,
// and sends it. A load that has fallen behind sends at once, but still
// reads what has arrived every 16 messages.
func (ld *openLoad) send() error {
	due := ld.due(ld.m)
	for {
		now := ld.now()
		if now >= due {
			if ld.since >= 16 {
				if err := ld.poll(0); err != nil {
					return err
				}
			}
			break
		}
		if err := ld.poll(due - now); err != nil {
			return err
		}
	}
	i := int(ld.m % int64(len(ld.fds)))
	q := &ld.pending[i]
	if q.tail-q.head == fifoDepth {
		return fmt.Errorf("connection %d has %d messages unanswered: the server is not keeping up", i, fifoDepth)
	}
	sentAt := ld.now()
	ld.late = append(ld.late, sentAt-due)
	q.t[q.tail%fifoDepth] = sentAt
	q.tail++
	if n, err := unix.Write(ld.fds[i], ld.msg[:]); err != nil || n != openMsg {
		return fmt.Errorf("connection %d: write: %d of %d bytes (%v)", i, n, openMsg, err)
	}
	ld.m++
	ld.sent++
	ld.since++
	return nil
}

// poll waits up to timeout ns for echoes and reads them.
func (ld *openLoad) poll(timeout int64) error {
	ld.since = 0
	ts := unix.NsecToTimespec(timeout)
	// A raw system call: this goroutine is the only one that runs here
	// meanwhile, and it saves the scheduler's hand-off of the P.
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(ld.epfd), uintptr(unsafe.Pointer(&ld.events[0])),
		uintptr(len(ld.events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch errno {
	case 0:
	case unix.EINTR:
		return nil
	default:
		return fmt.Errorf("epoll_pwait2: %w", errno)
	}
	for _, ev := range ld.events[:n] {
		if err := ld.read(int(ev.Fd)); err != nil {
			return err
		}
	}
	return nil
}

// read takes what connection i has and matches it to its messages.
func (ld *openLoad) read(i int) error {
	for {
		n, err := unix.Read(ld.fds[i], ld.buf)
		switch {
		case err == unix.EAGAIN:
			return nil
		case err != nil:
			return fmt.Errorf("connection %d: read: %w", i, err)
		case n == 0:
			return fmt.Errorf("connection %d: the server closed it", i)
		}
		now := ld.now()
		q := &ld.pending[i]
		for ld.partial[i] += n; ld.partial[i] >= openMsg; ld.partial[i] -= openMsg {
			if q.head == q.tail {
				return fmt.Errorf("connection %d: an echo of a message never sent", i)
			}
			ld.lat = append(ld.lat, now-q.t[q.head%fifoDepth])
			q.head++
		}
		if n < len(ld.buf) {
			return nil
		}
	}
}

// drain reads until every message sent has its echo, for at most
// maxPending.
func (ld *openLoad) drain() error {
	end := ld.now() + int64(maxPending)
	for ld.unanswered() > 0 {
		left := end - ld.now()
		if left <= 0 {
			return fmt.Errorf("%d echoes still missing after %v", ld.unanswered(), maxPending)
		}
		if err := ld.poll(left); err != nil {
			return err
		}
	}
	return nil
}

func (ld *openLoad) unanswered() int {
	n := 0
	for i := range ld.pending {
		n += ld.pending[i].tail - ld.pending[i].head
	}
	return n
}

// p99 is the 99th percentile of the latencies since restart.
func (ld *openLoad) p99() time.Duration {
	if len(ld.lat) == 0 {
		return 0
	}
	slices.Sort(ld.lat)
	return time.Duration(ld.lat[len(ld.lat)*99/100])
}

// idleServers opens idleConns connections to every server, has each
// answer one echo, and measures the servers' CPU and context switches
// over idleFor while the connections sit idle. It runs once whatever b.N
// is (with -benchtime up to 10s the framework calls it once).
func idleServers(b *testing.B, running []*runningServer) map[string]idleResult {
	for _, rs := range running {
		conns := make([]net.Conn, idleConns)
		b.Cleanup(func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		})
		parallel(b, idleConns, func(i int) error {
			c, err := dial(rs.child.Addr, i)
			if err != nil {
				return err
			}
			conns[i] = c
			return echoOnce(c, i)
		})
	}
	// Let whatever the connections started (a loop's last pass, the
	// runtime's after-burst wake-ups) settle first.
	time.Sleep(time.Second)
	cpu0, cs0 := map[string]time.Duration{}, map[string]int64{}
	for _, rs := range running {
		cpu0[rs.name], cs0[rs.name] = rs.child.CPUTime(b), rs.child.Switches(b)
	}
	start := time.Now()
	time.Sleep(idleFor)
	secs := time.Since(start).Seconds()
	got := map[string]idleResult{}
	for _, rs := range running {
		cpu := rs.child.CPUTime(b) - cpu0[rs.name]
		cs := rs.child.Switches(b) - cs0[rs.name]
		got[rs.name] = idleResult{cpuPct: cpu.Seconds() / secs * 100, csPerS: float64(cs) / secs}
	}
	return got
}

// openTable formats the run's figures: per case, each server's CPU per
// round trip, its ratio to the C server's in this run, p99 and context
// switches per round trip; then the idle figures.
func openTable(name string, running []*runningServer, got map[string]openResult, idle map[string]idleResult) string {
	var sb strings.Builder
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&sb, "%s: open loop, %d connections, %d B; server CPU per round trip, its ratio to cecho's in this run, p99 latency, server context switches per round trip (load average %s):\n",
		name, openConns, openMsg, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(&sb, "%-11s %-15s %9s %10s %7s %9s %7s\n", "case", "server", "rt/s", "cpu/rt", "vs C", "p99", "cs/rt")
	for _, oc := range openCases {
		ref, hasRef := got["cecho/"+oc.String()]
		for _, rs := range running {
			r, ok := got[rs.name+"/"+oc.String()]
			if !ok {
				continue
			}
			ratio := "-"
			if hasRef && ref.cpuPerRT > 0 {
				ratio = fmt.Sprintf("%.2fx", r.cpuPerRT/ref.cpuPerRT)
			}
			fmt.Fprintf(&sb, "%-11s %-15s %9.0f %7.2f us %7s %6.0f us %7.3f\n",
				oc, rs.name, r.rate, r.cpuPerRT, ratio, float64(r.p99.Nanoseconds())/1e3, r.csPerRT)
		}
	}
	if len(idle) > 0 {
		fmt.Fprintf(&sb, "idle, %d connections open, %v: server CPU and context switches\n", idleConns, idleFor)
		for _, rs := range running {
			if r, ok := idle[rs.name]; ok {
				fmt.Fprintf(&sb, "%-11s %-15s %7.3f%% of a CPU %8.1f cs/s\n", "idle", rs.name, r.cpuPct, r.csPerS)
			}
		}
	}
	return sb.String()
}

// CPUTime returns the CPU time the process has used so far, all its
// threads', to the nanosecond: its process CPU-time clock.
func (c *child) CPUTime(t testing.TB) time.Duration {
	t.Helper()
	var ts unix.Timespec
	// clock_getcpuclockid: the process's CPUCLOCK_SCHED clock.
	if err := unix.ClockGettime(int32((^c.Pid)<<3|2), &ts); err != nil {
		t.Fatalf("CPU clock of process %d: %v", c.Pid, err)
	}
	return time.Duration(ts.Nano())
}

// Switches returns the context switches of the process's threads so far,
// voluntary and involuntary.
func (c *child) Switches(t testing.TB) int64 {
	t.Helper()
	var n int64
	for _, v := range c.ThreadSwitches(t) {
		n += v
	}
	return n
}

// ThreadSwitches returns each thread's context switches so far, by tid.
func (c *child) ThreadSwitches(t testing.TB) map[int]int64 {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", c.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int64{}
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil {
			t.Fatal(err)
		}
		tid, _ := strconv.Atoi(e.Name())
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[0], "_ctxt_switches:") {
				v, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil {
					t.Fatalf("%s/%s/status: %q: %v", dir, e.Name(), line, err)
				}
				got[tid] += v
			}
		}
	}
	return got
}

// threadDiff formats each thread of process pid's context switches
// between two snapshots, the busiest first, naming the system call each
// thread is in now (a Go server's loop waits in epoll_pwait or
// io_uring_enter, the runtime's monitor in nanosleep, idle threads in
// futex).
func threadDiff(pid int, before, after map[int]int64) string {
	type d struct {
		tid int
		n   int64
	}
	var ds []d
	for tid, n := range after {
		ds = append(ds, d{tid, n - before[tid]})
	}
	slices.SortFunc(ds, func(a, b d) int { return int(b.n - a.n) })
	var parts []string
	for _, x := range ds {
		parts = append(parts, fmt.Sprintf("%d %s: %d", x.tid, syscallNow(pid, x.tid), x.n))
	}
	return strings.Join(parts, ", ")
}

// syscallNames name the system calls a server's threads wait in.
var syscallNames = map[string]string{
	"7": "poll", "35": "nanosleep", "202": "futex", "230": "clock_nanosleep", "232": "epoll_wait",
	"281": "epoll_pwait", "426": "io_uring_enter", "441": "epoll_pwait2",
}

// syscallNow returns the system call thread tid of process pid is in, if
// it is in one.
func syscallNow(pid, tid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	f := strings.Fields(string(b))
	switch {
	case err != nil || len(f) == 0:
		return "?"
	case f[0] == "running":
		return "running"
	case syscallNames[f[0]] != "":
		return syscallNames[f[0]]
	}
	return "syscall " + f[0]
}

func quantiles(v []int64) string {
	if len(v) == 0 {
		return "none"
	}
	slices.Sort(v)
	q := func(f float64) time.Duration { return time.Duration(v[int(float64(len(v)-1)*f)]) }
	return fmt.Sprintf("p50 %v p90 %v p99 %v max %v", q(.5), q(.9), q(.99), q(1))
}
