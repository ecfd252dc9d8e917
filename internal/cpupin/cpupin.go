// Package cpupin pins processes to CPUs with sched_setaffinity(2), so a
// benchmark can keep the server and the load generator off each other's
// cores.
//
// Affinity belongs to threads, not processes: Pin sets it on every thread a
// process has (listed in /proc/PID/task), and a thread or process created
// afterwards inherits it from its creator. StartPinned starts a command
// already pinned, so none of its threads ever runs elsewhere.
package cpupin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/procstat"
)

// maxCPU bounds CPU numbers: a cpu_set_t holds 1024.
const maxCPU = 1024

// OnlinePath lists the CPUs the kernel has online.
const OnlinePath = "/sys/devices/system/cpu/online"

// ParseList parses a CPU list in the kernel's format ("0", "0-3",
// "0,2-3"), the one taskset -c and /sys use. The result is sorted and has
// no duplicates.
func ParseList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("cpu list is empty")
	}
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := cpuNum(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = cpuNum(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("cpu list %q: range %s runs backwards", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

func cpuNum(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= maxCPU {
		return 0, fmt.Errorf("%q is not a CPU number (0 to %d)", s, maxCPU-1)
	}
	return n, nil
}

// FormatList writes cpus in the kernel's list format, collapsing runs.
func FormatList(cpus []int) string {
	c := slices.Compact(slices.Sorted(slices.Values(cpus)))
	var parts []string
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(c[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", c[i], c[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// Online returns the CPUs the kernel has online.
func Online() ([]int, error) {
	b, err := os.ReadFile(OnlinePath)
	if err != nil {
		return nil, fmt.Errorf("cpupin: %w", err)
	}
	return ParseList(string(b))
}

// Check returns an error naming any CPU in cpus that is not online.
func Check(cpus []int) error {
	online, err := Online()
	if err != nil {
		return err
	}
	for _, c := range cpus {
		if !slices.Contains(online, c) {
			return fmt.Errorf("cpu %d is not online (online: %s)", c, FormatList(online))
		}
	}
	return nil
}

func set(cpus []int) (*unix.CPUSet, error) {
	if len(cpus) == 0 {
		return nil, errors.New("cpupin: no CPUs given")
	}
	var s unix.CPUSet
	for _, c := range cpus {
		if c < 0 || c >= maxCPU {
			return nil, fmt.Errorf("cpupin: cpu %d out of range", c)
		}
		s.Set(c)
	}
	return &s, nil
}

// Pin sets the affinity of every thread of process pid to cpus. It lists
// the threads again until a pass finds no new one, so a thread started
// meanwhile is caught (or inherits the affinity from a pinned creator).
func Pin(pid int, cpus []int) error {
	s, err := set(cpus)
	if err != nil {
		return err
	}
	done := map[int]bool{}
	for {
		tids, err := procstat.Tasks(pid)
		if err != nil {
			return fmt.Errorf("cpupin: pid %d: %w", pid, err)
		}
		fresh := 0
		for _, t := range tids {
			if done[t] {
				continue
			}
			fresh++
			done[t] = true
			if err := unix.SchedSetaffinity(t, s); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cpupin: sched_setaffinity(%d, %s): %w", t, FormatList(cpus), err)
			}
		}
		if fresh == 0 {
			return nil
		}
	}
}

// PinTree pins pid and each of its live descendants (the children of the
// fork and prefork models).
func PinTree(pid int, cpus []int) error {
	kids, err := procstat.Descendants(pid)
	if err != nil {
		return err
	}
	if err := Pin(pid, cpus); err != nil {
		return err
	}
	for _, k := range kids {
		if err := Pin(k, cpus); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// PinSelf pins every thread of the current process to cpus.
func PinSelf(cpus []int) error { return Pin(os.Getpid(), cpus) }

// Affinity returns the CPUs thread (or process) id may run on; 0 means
// the calling thread.
func Affinity(tid int) ([]int, error) {
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &s); err != nil {
		return nil, fmt.Errorf("cpupin: sched_getaffinity(%d): %w", tid, err)
	}
	var cpus []int
	for c := range maxCPU {
		if s.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// StartPinned starts cmd with every thread of the new process pinned to
// cpus from its first instruction: the fork happens on a thread that is
// pinned for the moment, and the child inherits that thread's affinity.
func StartPinned(cmd *exec.Cmd, cpus []int) error {
	s, err := set(cpus)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("cpupin: sched_getaffinity: %w", err)
	}
	if err := unix.SchedSetaffinity(0, s); err != nil {
		return fmt.Errorf("cpupin: sched_setaffinity(%s): %w", FormatList(cpus), err)
	}
	startErr := cmd.Start()
	if err := unix.SchedSetaffinity(0, &old); err != nil {
		// This thread must not run other goroutines with the wrong
		// affinity: locking it once more keeps it to this goroutine, and
		// the runtime ends it when the goroutine exits.
		runtime.LockOSThread()
		return errors.Join(startErr, fmt.Errorf("cpupin: restoring affinity: %w", err))
	}
	return startErr
}
