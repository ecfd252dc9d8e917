// Package procstat reads what a process, and the processes it started,
// cost: CPU time from /proc/PID/stat (utime and stime, plus cutime and
// cstime for children already reaped), and resident memory, thread count
// and context switches from /proc/PID/status.
//
// Multi-process servers (fork, prefork) do their work in children, so
// [Tree] adds up a process and all its live descendants; a child that
// already exited and was waited for is in its parent's cutime and cstime.
// What a reaped child cost in memory or context switches is gone: only live
// processes contribute those.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ClockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. Linux
// fixes it at 100 in its user ABI on every architecture.
const ClockTicks = 100

// Proc is where procfs is mounted.
const Proc = "/proc"

// Stat is the part of /proc/PID/stat this package uses.
type Stat struct {
	// PID and PPID are the process and its parent.
	PID, PPID int
	// Comm is the executable's name, as the kernel keeps it (at most 15
	// bytes).
	Comm string
	// State is one letter: R running, S sleeping, Z zombie, and so on.
	State byte
	// UTime and STime are the process's user and system CPU time in
	// clock ticks; CUTime and CSTime are those of its children that have
	// been waited for.
	UTime, STime, CUTime, CSTime uint64
	// Threads is the number of threads.
	Threads int
}

// CPU is the process's own CPU time, user plus system.
func (s Stat) CPU() time.Duration { return ticks(s.UTime + s.STime) }

// ChildrenCPU is the CPU time of the process's reaped children.
func (s Stat) ChildrenCPU() time.Duration { return ticks(s.CUTime + s.CSTime) }

func ticks(n uint64) time.Duration { return time.Duration(n) * (time.Second / ClockTicks) }

// ParseStat parses the contents of /proc/PID/stat. The command name may
// hold spaces and parentheses, so the fields after it are found from the
// last ')'.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return s, errors.New("procstat: stat: no (comm) field")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return s, fmt.Errorf("procstat: stat: pid: %w", err)
	}
	s.PID = pid
	s.Comm = string(b[open+1 : closing])
	f := bytes.Fields(b[closing+1:])
	// f[0] is field 3 (state) of proc(5); field n is f[n-3].
	const last = 20 - 3 // num_threads
	if len(f) <= last {
		return s, fmt.Errorf("procstat: stat: %d fields after comm, want at least %d", len(f), last+1)
	}
	if len(f[0]) != 1 {
		return s, fmt.Errorf("procstat: stat: state %q", f[0])
	}
	s.State = f[0][0]
	nums := []struct {
		field int
		dst   *uint64
	}{{14, &s.UTime}, {15, &s.STime}, {16, &s.CUTime}, {17, &s.CSTime}}
	for _, n := range nums {
		v, err := strconv.ParseUint(string(f[n.field-3]), 10, 64)
		if err != nil {
			return s, fmt.Errorf("procstat: stat field %d: %w", n.field, err)
		}
		*n.dst = v
	}
	if s.PPID, err = strconv.Atoi(string(f[4-3])); err != nil {
		return s, fmt.Errorf("procstat: stat ppid: %w", err)
	}
	if s.Threads, err = strconv.Atoi(string(f[20-3])); err != nil {
		return s, fmt.Errorf("procstat: stat num_threads: %w", err)
	}
	return s, nil
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) { return read(pid, "stat", ParseStat) }

// read parses the file /proc/PID/name.
func read[T any](pid int, name string, parse func([]byte) (T, error)) (T, error) {
	b, err := os.ReadFile(filepath.Join(Proc, strconv.Itoa(pid), name))
	if err != nil {
		var zero T
		return zero, fmt.Errorf("procstat: %w", err)
	}
	v, err := parse(b)
	if err != nil {
		return v, fmt.Errorf("pid %d: %w", pid, err)
	}
	return v, nil
}

// Status is the part of /proc/PID/status this package uses.
type Status struct {
	// RSS is the resident set size in bytes (VmRSS), and PeakRSS its
	// high-water mark (VmHWM).
	RSS, PeakRSS uint64
	// Threads is the number of threads.
	Threads int
	// Voluntary counts context switches where the thread gave up the CPU
	// (it blocked); Involuntary those where the scheduler took it away.
	// In /proc/PID/status they are the main thread's only; see Switches.
	Voluntary, Involuntary uint64
}

// ParseStatus parses the contents of /proc/PID/status. Fields it does not
// find stay zero (a zombie has no Vm lines).
func ParseStatus(b []byte) (Status, error) {
	var s Status
	for line := range bytes.Lines(b) {
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *uint64
		kib := false
		switch string(key) {
		case "VmRSS":
			dst, kib = &s.RSS, true
		case "VmHWM":
			dst, kib = &s.PeakRSS, true
		case "voluntary_ctxt_switches":
			dst = &s.Voluntary
		case "nonvoluntary_ctxt_switches":
			dst = &s.Involuntary
		case "Threads":
			n, err := strconv.Atoi(string(bytes.TrimSpace(val)))
			if err != nil {
				return s, fmt.Errorf("procstat: status Threads: %w", err)
			}
			s.Threads = n
			continue
		default:
			continue
		}
		f := bytes.Fields(val)
		if len(f) == 0 {
			return s, fmt.Errorf("procstat: status %s: no value", key)
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return s, fmt.Errorf("procstat: status %s: %w", key, err)
		}
		if kib {
			if len(f) < 2 || string(f[1]) != "kB" {
				return s, fmt.Errorf("procstat: status %s: want a value in kB", key)
			}
			if v > (1<<64-1)/1024 {
				return s, fmt.Errorf("procstat: status %s: %d kB out of range", key, v)
			}
			v *= 1024
		}
		*dst = v
	}
	return s, nil
}

// ReadStatus reads /proc/PID/status.
func ReadStatus(pid int) (Status, error) { return read(pid, "status", ParseStatus) }

// Sample is what a process tree (a process and its live descendants) has
// cost up to one moment.
type Sample struct {
	// Procs is the number of live processes in the tree.
	Procs int
	// CPU is user plus system time of every live process in the tree and
	// of every child any of them has reaped.
	CPU time.Duration
	// RSS sums the resident memory of the live processes, and PeakRSS their
	// high-water marks (an upper bound on the tree's peak, as the
	// processes need not peak at once).
	RSS, PeakRSS uint64
	// Threads sums the live processes' threads.
	Threads int
	// Voluntary and Involuntary sum the context switches of the live
	// processes' live threads (a thread that exited takes its counts
	// along).
	Voluntary, Involuntary uint64
}

// Tree samples pid and its live descendants. It fails only if pid itself
// cannot be read; a descendant that exits meanwhile is left out.
func Tree(pid int) (Sample, error) {
	pids, err := Descendants(pid)
	if err != nil {
		return Sample{}, err
	}
	var s Sample
	for i, p := range append([]int{pid}, pids...) {
		st, err1 := ReadStat(p)
		ss, err2 := ReadStatus(p)
		if err := errors.Join(err1, err2); err != nil {
			if i == 0 {
				return Sample{}, err
			}
			continue // it exited; its parent's cutime has it once reaped
		}
		s.Procs++
		s.CPU += st.CPU() + st.ChildrenCPU()
		s.RSS += ss.RSS
		s.PeakRSS += ss.PeakRSS
		s.Threads += ss.Threads
		vol, invol := Switches(p)
		s.Voluntary += vol
		s.Involuntary += invol
	}
	return s, nil
}

// Switches sums the voluntary and involuntary context switches of pid's
// live threads. /proc/PID/status counts only the main thread, so this reads
// /proc/PID/task/TID/status for each thread.
func Switches(pid int) (voluntary, involuntary uint64) {
	tids, err := Tasks(pid)
	if err != nil {
		return 0, 0
	}
	for _, t := range tids {
		ts, err := read(pid, filepath.Join("task", strconv.Itoa(t), "status"), ParseStatus)
		if err != nil {
			continue // the thread exited
		}
		voluntary += ts.Voluntary
		involuntary += ts.Involuntary
	}
	return voluntary, involuntary
}

// Descendants returns the pids of pid's live descendants (children,
// grandchildren, ...), found by scanning every process's parent.
func Descendants(pid int) ([]int, error) {
	entries, err := os.ReadDir(Proc)
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		st, err := ReadStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		children[st.PPID] = append(children[st.PPID], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out, nil
}

// Tasks returns the thread ids of pid, from /proc/PID/task.
func Tasks(pid int) ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(Proc, strconv.Itoa(pid), "task"))
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if t, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, t)
		}
	}
	return tids, nil
}
