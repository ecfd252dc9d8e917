package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/tcplab/tcplab/internal/sdnotify"
)

// serve tells whoever started it that it serves, without a log line to
// scrape:
//
//   - with NOTIFY_SOCKET in its environment (systemd's Type=notify, or
//     any launcher that speaks the protocol), one datagram once every
//     listener is bound: READY=1, STATUS=serving APP on ADDR (model
//     MODEL), X_TCPLAB_ADDR=ADDR, and X_TCPLAB_METRICS=URL with
//     --metrics; and STOPPING=1 when it starts to shut down;
//   - with --print-addr, the lines "listening on ADDR" and, with --metrics,
//     "metrics on URL" on stdout, at the same moment.
//
// A fork or prefork child says nothing: its parent is the service.

// Notification variables of tcplab's own (systemd ignores X_ variables).
const (
	notifyAddr    = "X_TCPLAB_ADDR"
	notifyMetrics = "X_TCPLAB_METRICS"
)

// readiness is what serve reports its state to.
type readiness struct {
	socket string    // NOTIFY_SOCKET, or ""
	print  io.Writer // --print-addr's stdout, or nil
	log    *slog.Logger
	child  bool
}

func newReadiness(printAddr bool, stdout io.Writer, log *slog.Logger, child bool) readiness {
	r := readiness{socket: os.Getenv(sdnotify.Env), log: log, child: child}
	if printAddr {
		r.print = stdout
	}
	return r
}

// ready reports that the server of app under model listens on addr, and
// serves metrics on metricsURL if it is not empty.
func (r readiness) ready(app, model, addr, metricsURL string) {
	if r.child {
		return
	}
	if r.print != nil {
		fmt.Fprintf(r.print, "listening on %s\n", addr)
		if metricsURL != "" {
			fmt.Fprintf(r.print, "metrics on %s\n", metricsURL)
		}
	}
	state := []string{sdnotify.Ready, fmt.Sprintf("STATUS=serving %s on %s (model %s)", app, addr, model), notifyAddr + "=" + addr}
	if metricsURL != "" {
		state = append(state, notifyMetrics+"="+metricsURL)
	}
	r.send(state...)
}

// stopping reports that the server is shutting down.
func (r readiness) stopping() {
	if !r.child {
		r.send(sdnotify.Stopping, "STATUS=shutting down")
	}
}

// send notifies the service manager, if there is one. A notification that
// fails is logged: the service goes on serving, and its manager decides
// what a missing READY=1 means.
func (r readiness) send(state ...string) {
	if err := sdnotify.Send(r.socket, state...); err != nil {
		r.log.Warn("warning: readiness notification failed", "err", err)
	}
}
