package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/testkit"
)

func TestHardeningFlagsBadInput(t *testing.T) {
	cert := conformance.NewTestCert(t)
	for _, args := range [][]string{
		{"serve", "--max-conns-per-ip", "-1"},
		{"serve", "--conn-rate", "-2"},
		{"serve", "--conn-burst", "0"},
		{"serve", "--frame-timeout", "-1s"},
		{"serve", "--handshake-timeout", "0s"},
		{"serve", "--tls-cert", cert.CertFile},
		{"serve", "--tls-key", cert.KeyFile},
		{"serve", "--pprof"},
		{"serve", "--metrics", "no-port-here"},
		{"serve", "--addr", "127.0.0.1:0", "--metrics", "99999"},
		{"serve", "--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:70000"},
		{"serve", "--addr", "127.0.0.1:0", "--metrics", ":-1"},
		{"chat", "--tls-ca", cert.CAFile},
		{"chat", "--tls", "--tls-insecure", "--tls-ca", cert.CAFile},
	} {
		code, _, stderr := runCmd(t, args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "tcplab: ") {
			t.Errorf("%q: stderr %q, want one line starting with \"tcplab: \"", args, stderr)
		}
	}
	_, _, stderr := runCmd(t, "serve", "--addr", "127.0.0.1:0", "--metrics", "99999")
	if !strings.Contains(stderr, "out of range") {
		t.Errorf("--metrics 99999: %q, want the port called out of range", stderr)
	}
	code, _, stderr := runCmd(t, "serve", "--tls-cert", cert.CAFile+".missing", "--tls-key", cert.KeyFile)
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--tls-cert") {
		t.Errorf("missing certificate file: exit %d, %q", code, stderr)
	}
}

// TestServeMetrics serves echo with --metrics on a bare port (127.0.0.1
// only) and --pprof, and reads both.
func TestServeMetrics(t *testing.T) {
	s := serve(t, "--addr", "127.0.0.1:0", "--metrics", "0", "--pprof")
	base, ok := strings.CutSuffix(s.Ready[launch.MetricsVar], "/metrics")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("metrics at %q: want http://127.0.0.1:PORT/metrics (a bare port listens on 127.0.0.1 only)", s.Ready[launch.MetricsVar])
	}
	echoOnce(t, s.Addr, "counted")
	testkit.Eventually(t, testkit.Bound, "/metrics counts the connection and its 7 bytes", func() error {
		code, body := testkit.Get(t, base+"/metrics")
		if code == http.StatusOK && strings.Contains(body, `tcplab_connections_accepted_total{app="echo",model="goroutine"} 1`+"\n") &&
			strings.Contains(body, `tcplab_bytes_in_total{app="echo",model="goroutine"} 7`+"\n") {
			return nil
		}
		return fmt.Errorf("/metrics: %d\n%s", code, body)
	})
	if code, _ := testkit.Get(t, base+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Fatalf("pprof: %d", code)
	}
	stop(t, s)
}

// TestChatOverTLS runs the chat client with --tls against serve
// --tls-cert: with the test CA it chats; without it the certificate is
// refused; with --tls-insecure it connects and says the check is off; a
// plaintext client gets an error, not a silent plaintext session. On a
// blocking model and an event-loop one.
func TestChatOverTLS(t *testing.T) {
	for _, model := range []string{"goroutine", "reactor"} {
		t.Run(model, func(t *testing.T) { chatOverTLS(t, model) })
	}
}

// chatOverTLS is TestChatOverTLS on one model.
func chatOverTLS(t *testing.T, model string) {
	cert := conformance.NewTestCert(t)
	addr := serve(t, "--app", "chat", "--model", model, "--addr", "127.0.0.1:0", "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile,
		"--handshake-timeout", "2s").Addr
	chatWith := func(args ...string) (int, string, string) {
		stdin := strings.NewReader("hello over TLS\n/who\n")
		var out, errb syncBuffer
		root := newRoot(&out, &errb)
		root.SetIn(stdin)
		root.SetArgs(append([]string{"chat", "--addr", addr, "--nick", "tess", "--timeout", "5s"}, args...))
		err := root.ExecuteContext(context.Background())
		code := 0
		if err != nil {
			code = 1
			errb.Write([]byte(err.Error()))
		}
		return code, out.String(), errb.String()
	}
	code, out, errs := chatWith("--tls", "--tls-ca", cert.CAFile)
	if code != 0 || !strings.Contains(out, "*** connected to "+addr+" as tess in lobby") || !strings.Contains(out, "members: tess") ||
		!strings.HasSuffix(out, "*** disconnected: quit\n") {
		t.Fatalf("chat over TLS: exit %d, out %q, err %q", code, out, errs)
	}
	code, _, errs = chatWith("--tls")
	if code != 1 || !strings.Contains(errs, "certificate") {
		t.Fatalf("untrusted certificate: exit %d, err %q", code, errs)
	}
	code, out, errs = chatWith("--tls", "--tls-insecure")
	if code != 0 || !strings.Contains(out, "warning: --tls-insecure") || !strings.Contains(out, "members: tess") {
		t.Fatalf("--tls-insecure: exit %d, out %q, err %q", code, out, errs)
	}
	code, out, errs = chatWith()
	if code != 1 || strings.Contains(out, "members:") {
		t.Fatalf("plaintext client of a TLS server: exit %d, out %q, err %q", code, out, errs)
	}
}
