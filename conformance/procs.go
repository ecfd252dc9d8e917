package conformance

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/internal/testkit"
)

// Proc is a process found under /proc.
type Proc struct {
	PID, PPID int
	State     string // R, S, Z (zombie), ...
	Exe       string // the program it runs; "" if unreadable (zombies)
}

// String describes p for test logs.
func (p Proc) String() string {
	return fmt.Sprintf("pid %d (ppid %d, state %s, %s)", p.PID, p.PPID, p.State, p.Exe)
}

// Processes lists the processes on the machine that this user can see.
func Processes() ([]Proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it ended meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		exe, _ := os.Readlink("/proc/" + e.Name() + "/exe")
		out = append(out, Proc{PID: pid, PPID: ppid, State: f[0], Exe: exe})
	}
	return out, nil
}

// Children lists the live and zombie children of process pid.
func Children(pid int) ([]Proc, error) {
	all, err := Processes()
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, p := range all {
		if p.PPID == pid {
			out = append(out, p)
		}
	}
	return out, nil
}

// Strays lists what this process's servers left behind: its children,
// alive or zombie, and orphans, meaning other processes running this same
// executable (a fork or prefork child outliving its parent is re-parented,
// so it is no longer a child). Call it once every server is shut down.
func Strays() ([]Proc, error) {
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("reading /proc/self/exe: %w", err)
	}
	all, err := Processes()
	if err != nil {
		return nil, err
	}
	me := os.Getpid()
	var out []Proc
	for _, p := range all {
		if p.PID != me && (p.PPID == me || p.Exe == self) {
			out = append(out, p)
		}
	}
	return out, nil
}

// CheckNoStrays fails t if Strays finds anything. A child may take a moment
// to exit after its parent's shutdown returns (an orphan's Pdeathsig kill
// or a reaped child's /proc entry), so it looks again until testkit.Bound,
// a failure bound.
func CheckNoStrays(t testing.TB) {
	t.Helper()
	testkit.Eventually(t, testkit.Bound, "no process left behind", func() error {
		strays, err := Strays()
		if err != nil {
			t.Fatal(err)
		}
		if len(strays) > 0 {
			return fmt.Errorf("processes left behind: %v", strays)
		}
		return nil
	})
}
