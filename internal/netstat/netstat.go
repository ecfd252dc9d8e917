// Package netstat reads the kernel's TCP evidence and limits: the
// accept-queue counters in /proc/net/netstat (TcpExt ListenOverflows and
// ListenDrops) and the sysctls under /proc/sys that cap a TCP server and
// its clients.
//
// The counters are per network namespace, not per socket: a delta taken
// around a run counts every listener in the namespace, so other traffic on
// the machine shows up too.
package netstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// NetstatPath is the file holding the TcpExt counters.
const NetstatPath = "/proc/net/netstat"

// Listen holds the accept-queue counters.
type Listen struct {
	// Overflows counts connections dropped because a listener's accept
	// queue was full: a SYN refused, or a handshake's final ACK ignored
	// (the client then believes it is connected).
	Overflows uint64 `json:"listen_overflows"`
	// Drops counts every connection dropped at a listener, overflows
	// included.
	Drops uint64 `json:"listen_drops"`
}

// Sub returns the change from before to l. A counter that went backwards
// (a namespace reset) gives 0.
func (l Listen) Sub(before Listen) Listen {
	d := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Listen{Overflows: d(l.Overflows, before.Overflows), Drops: d(l.Drops, before.Drops)}
}

// ReadListen reads the accept-queue counters now.
func ReadListen() (Listen, error) {
	b, err := os.ReadFile(NetstatPath)
	if err != nil {
		return Listen{}, fmt.Errorf("netstat: %w", err)
	}
	return ParseListen(b)
}

// ParseListen finds ListenOverflows and ListenDrops in the contents of
// /proc/net/netstat: a "TcpExt:" line of names followed by a "TcpExt:" line
// of values.
func ParseListen(b []byte) (Listen, error) {
	ext, err := Parse(b, "TcpExt")
	if err != nil {
		return Listen{}, err
	}
	over, ok1 := ext["ListenOverflows"]
	drops, ok2 := ext["ListenDrops"]
	if !ok1 || !ok2 {
		return Listen{}, errors.New("netstat: TcpExt has no ListenOverflows or ListenDrops")
	}
	return Listen{Overflows: over, Drops: drops}, nil
}

// Parse returns the named counters of one section ("TcpExt", "IpExt",
// ...) of a /proc/net/netstat or /proc/net/snmp style file.
func Parse(b []byte, section string) (map[string]uint64, error) {
	prefix := []byte(section + ":")
	var names [][]byte
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		if len(f) != len(names) {
			return nil, fmt.Errorf("netstat: %s: %d names but %d values", section, len(names), len(f))
		}
		out := make(map[string]uint64, len(f))
		for i, v := range f {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("netstat: %s %s: %w", section, names[i], err)
			}
			out[string(names[i])] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("netstat: no %s name and value lines", section)
}

// SysctlDir is where sysctls are exposed as files.
const SysctlDir = "/proc/sys"

// Sysctl returns a sysctl's value as text, whitespace-trimmed; name is
// dotted ("net.core.somaxconn").
func Sysctl(name string) (string, error) {
	if name == "" || strings.Contains(name, "/") || strings.Contains(name, "..") {
		return "", fmt.Errorf("sysctl %q: not a sysctl name", name)
	}
	b, err := os.ReadFile(filepath.Join(SysctlDir, strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", name, err)
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}

// SysctlInt returns a sysctl holding one integer.
func SysctlInt(name string) (int, error) {
	s, err := Sysctl(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, err)
	}
	return n, nil
}

// PortRange is net.ipv4.ip_local_port_range: the ephemeral ports a client
// socket gets.
type PortRange struct{ Low, High int }

// Size is the number of ports in the range, which caps the connections
// one source address can hold open to one server address and port.
func (r PortRange) Size() int { return r.High - r.Low + 1 }

// ParsePortRange parses "LOW HIGH".
func ParsePortRange(s string) (PortRange, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return PortRange{}, fmt.Errorf("port range %q: want two numbers", s)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	if lo < 1 || hi > 65535 || lo > hi {
		return PortRange{}, fmt.Errorf("port range %q: want 1 <= low <= high <= 65535", s)
	}
	return PortRange{lo, hi}, nil
}

// LocalPortRange reads net.ipv4.ip_local_port_range.
func LocalPortRange() (PortRange, error) {
	s, err := Sysctl("net.ipv4.ip_local_port_range")
	if err != nil {
		return PortRange{}, err
	}
	return ParsePortRange(s)
}
