package natsbus

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure a NATS server run inside this process.
type EmbeddedOptions struct {
	// Name is the server's name, unique in a cluster. Default: made up
	// by the server.
	Name string
	// Host is the address clients connect on. Default 127.0.0.1; another
	// value exposes the chat bus to whoever can reach it.
	Host string
	// Port is the client port. Default 0: a random free port.
	Port int
	// Cluster, if not empty, names the cluster this server joins: it
	// listens for routes on Host:ClusterPort (0: a random port) and
	// connects to Routes ("nats-route://host:port" of other servers).
	Cluster     string
	ClusterPort int
	Routes      []string
	// MaxMemory bounds JetStream's memory store (the nick claims and the
	// guest counter). Default 64 MiB.
	MaxMemory int64
	// MaxPayload is the largest message the server takes, in bytes:
	// PayloadFor(the chat's server frame limit) fits every message the
	// chat allows. At most MaxEmbeddedPayload. Default 0: NATS's own
	// default, 1 MiB.
	MaxPayload int
}

// MaxEmbeddedPayload is the largest EmbeddedOptions.MaxPayload: a NATS
// server's max payload must not pass its per-client pending bound, 64 MiB
// by default.
const MaxEmbeddedPayload = 64 << 20

// defaultPayload is a NATS server's max payload by default.
const defaultPayload = 1 << 20

// PayloadFor returns the max payload a NATS server needs to carry every
// message of a chat whose server frame limit (chat.Options.MaxServerFrame)
// is serverFrame: the longest frame plus EventOverhead, but no less than
// NATS's default of 1 MiB (which /who and /rooms replies may use), and at
// most MaxEmbeddedPayload.
func PayloadFor(serverFrame int) int {
	return min(max(serverFrame+EventOverhead, defaultPayload), MaxEmbeddedPayload)
}

// Embedded is a NATS server with JetStream running in this process: the
// chat bus of a fork or prefork server, whose children connect to it, or a
// test's cluster.
type Embedded struct {
	srv *server.Server
	dir string
}

// StartEmbedded starts a NATS server and waits until it takes connections.
// It never signs up for signals and logs nothing.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	o.Host = cmp.Or(o.Host, "127.0.0.1")
	port := cmp.Or(o.Port, server.RANDOM_PORT)
	o.MaxMemory = cmp.Or(o.MaxMemory, 64<<20)
	if o.MaxPayload < 0 || o.MaxPayload > MaxEmbeddedPayload {
		return nil, fmt.Errorf("embedded NATS: max payload %d: want 0 (the default) to %d bytes", o.MaxPayload, MaxEmbeddedPayload)
	}
	dir, err := os.MkdirTemp("", "tcplab-nats-")
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	opts := &server.Options{
		ServerName:         o.Name,
		Host:               o.Host,
		Port:               port,
		NoSigs:             true,
		NoLog:              true,
		JetStream:          true,
		JetStreamMaxMemory: o.MaxMemory,
		JetStreamMaxStore:  16 << 20, // the chat stores nothing on disk
		StoreDir:           dir,
		MaxPayload:         int32(o.MaxPayload),
	}
	if o.Cluster != "" {
		cport := o.ClusterPort
		if cport == 0 {
			cport = server.RANDOM_PORT
		}
		opts.Cluster = server.ClusterOpts{Name: o.Cluster, Host: o.Host, Port: cport}
		for _, r := range o.Routes {
			opts.Routes = append(opts.Routes, server.RoutesFromStr(r)...)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(dir)
		return nil, errors.New("embedded NATS: not ready for connections within 10s")
	}
	return &Embedded{srv: srv, dir: dir}, nil
}

// URL is the client URL, nats://host:port.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// RouteURL is the URL other servers of the cluster route to, or "" if the
// server is not clustered.
func (e *Embedded) RouteURL() string {
	addr := e.srv.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats-route://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
}

// Name is the server's name.
func (e *Embedded) Name() string { return e.srv.Name() }

// Shutdown stops the server, closing its connections, and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	os.RemoveAll(e.dir)
}
