package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/netstat"
)

// limit is one line of doctor's report.
type limit struct {
	name, value, caps string
}

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Print the kernel and process limits that cap a TCP server and its load, one line each",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, l := range limits() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", l.name, l.value, l.caps)
			}
			return tw.Flush()
		},
	}
}

// limits reads each limit and says what it caps, with this machine's
// numbers in the sentence. An unreadable value still gets its line.
func limits() []limit {
	var out []limit
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		msg := "unreadable: " + err.Error()
		out = append(out,
			limit{"nofile soft", msg, "caps the file descriptors (so connections) one process may hold"},
			limit{"nofile hard", msg, "caps how far a process may raise its soft limit"})
	} else {
		out = append(out,
			limit{"nofile soft", strconv.FormatUint(r.Cur, 10), fmt.Sprintf("a process holds at most %d descriptors: each connection is one (tcplab load raises its soft limit to the hard one)", r.Cur)},
			limit{"nofile hard", strconv.FormatUint(r.Max, 10), fmt.Sprintf("no process may raise its soft limit past %d without privileges: the most connections one process can have", r.Max)})
	}
	sysctl := func(name string, caps func(v string) string) {
		v, err := netstat.Sysctl(name)
		if err != nil {
			out = append(out, limit{name, "unreadable", caps("?") + " (" + err.Error() + ")"})
			return
		}
		out = append(out, limit{name, v, caps(v)})
	}
	sysctl("net.core.somaxconn", func(v string) string {
		return fmt.Sprintf("backlog > %s is silently cut to %s: the longest accept queue of completed connections a listener can have", v, v)
	})
	sysctl("net.ipv4.tcp_max_syn_backlog", func(v string) string {
		return fmt.Sprintf("at most %s half-open connections (SYN received, handshake not finished) wait per listener; past that SYNs are dropped unless syncookies answer", v)
	})
	sysctl("net.ipv4.tcp_syncookies", func(v string) string {
		switch v {
		case "0":
			return "0: off; a full SYN queue drops new SYNs, so clients retry after 1 s, 3 s, ..."
		case "1":
			return "1: when the SYN queue is full, SYN cookies answer instead of dropping (the accept queue, capped by somaxconn, still overflows)"
		case "2":
			return "2: every SYN is answered with a cookie; the SYN queue is never the limit"
		}
		return "SYN cookies when the SYN queue overflows"
	})
	sysctl("net.ipv4.ip_local_port_range", func(v string) string {
		r, err := netstat.ParsePortRange(v)
		if err != nil {
			return "the ephemeral ports client sockets get"
		}
		return fmt.Sprintf("%d ephemeral ports: at most %d connections from one source address to one server address and port (tcplab load adds 127.0.0.x sources beyond that)", r.Size(), r.Size())
	})
	for i := range out {
		out[i].caps = strings.ReplaceAll(out[i].caps, "\n", " ")
	}
	return out
}
