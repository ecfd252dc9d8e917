package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"
)

// tlsClientFlags are the chat client's TLS flags.
type tlsClientFlags struct {
	on         bool
	ca         string
	serverName string
	insecure   bool
}

func addTLSClientFlags(f *pflag.FlagSet, t *tlsClientFlags) {
	f.BoolVar(&t.on, "tls", false, "connect with TLS (the server runs with --tls-cert and --tls-key)")
	f.StringVar(&t.ca, "tls-ca", "", "PEM file of the CA certificates to trust instead of the system's (a test CA, say)")
	f.StringVar(&t.serverName, "tls-server-name", "", "the name the server's certificate must carry (default: the host of --addr)")
	f.BoolVar(&t.insecure, "tls-insecure", false, "do not check the server's certificate at all: for local testing only")
}

func (t *tlsClientFlags) check() error {
	if !t.on && (t.ca != "" || t.serverName != "" || t.insecure) {
		return errors.New("--tls-ca, --tls-server-name and --tls-insecure need --tls")
	}
	if t.insecure && t.ca != "" {
		return errors.New("--tls-insecure checks no certificate, so --tls-ca would be ignored: give one of them")
	}
	return nil
}

// config builds the client's TLS config for a server at addr.
func (t *tlsClientFlags) config(addr string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.serverName, InsecureSkipVerify: t.insecure}
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("--addr %q: %w", addr, err)
		}
		c.ServerName = host
	}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", t.ca)
		}
	}
	return c, nil
}

// dial connects to addr, over TLS if asked, within timeout.
func (t *tlsClientFlags) dial(ctx context.Context, addr string, timeout time.Duration, out io.Writer) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if !t.on {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", addr, err)
		}
		return c, nil
	}
	cfg, err := t.config(addr)
	if err != nil {
		return nil, err
	}
	if t.insecure {
		fmt.Fprintln(out, "*** warning: --tls-insecure: the server's certificate is not checked; anyone in the middle can read this chat")
	}
	td := &tls.Dialer{NetDialer: d, Config: cfg}
	c, err := td.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect with TLS to %s: %w", addr, err)
	}
	return c, nil
}
