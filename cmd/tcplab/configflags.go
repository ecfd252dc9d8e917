package main

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/engine"
)

// configFlag is one of serve's flags that sets an engine.Config field.
type configFlag struct {
	name  string // the flag, without "--"
	field string // the engine.Config field it sets
	usage string
	// off marks a flag whose 0 turns the setting off: the Config field
	// takes a negative value for that, and a zero there means its default.
	off bool
}

// configFlags is the one place where serve's flags meet engine.Config:
// each flag, the field it sets (its default is the field's, from
// engine.Config.WithDefaults), and whether its 0 means off. The engine's
// errors name fields; configError names the flags instead.
var configFlags = []configFlag{
	{"addr", "Addr", "address to listen on (0.0.0.0 or [::] only if you mean every interface)", false},
	{"backlog", "Backlog", "listen(2) backlog (the kernel caps it at net.core.somaxconn)", false},
	{"listeners", "Listeners", "SO_REUSEPORT listeners on the address", false},
	{"max-pending", "MaxPending", "outbound bytes buffered per connection before it is closed as a slow consumer", false},
	{"max-inbound", "MaxInbound", "unconsumed inbound bytes per connection before it is closed", false},
	{"write-timeout", "WriteTimeout", "close a connection whose socket takes no bytes for this long (must be positive)", false},
	{"drain-timeout", "DrainTimeout", "on shutdown, how long queued writes may flush (0: close at once)", false},
	{"workers", "Workers", "workers (pool, prefork, reactor-pool)", false},
	{"queue", "Queue", "queued connections (pool)", false},
	{"max-threads", "MaxThreads", "connection threads (thread)", false},
	{"max-procs", "MaxProcs", "child processes (fork)", false},
	{"loops", "Loops", "event loops (reactor, reactor-pool, uring)", false},
	{"balance", "Balance", "how connections spread over loops: round-robin or least-conns (reactor, reactor-pool, uring)", false},
	{"offload-workers", "OffloadWorkers", "offloaded functions (blocking steps a handler moves off the loops) run at once (reactor, reactor-pool, uring)", false},
	{"max-conns-per-ip", "MaxConnsPerIP", "connections open at once from one client address (IPv6: one /64); past it refused; 0 turns it off", true},
	{"limit-loopback", "LimitLoopback", "apply --max-conns-per-ip and --conn-rate to loopback clients too (exempt by default)", false},
	{"conn-rate", "ConnRate", "new connections a second from one client address; past it refused; 0 turns it off", true},
	{"conn-burst", "ConnBurst", "new connections one client address may open at once before --conn-rate applies", false},
	{"frame-timeout", "FrameTimeout", "close a connection whose frame is not complete this long after its first byte (slowloris); 0 turns it off", true},
	{"tls-cert", "TLSCert", "PEM certificate chain: serve TLS (1.2 or later) with --tls-key", false},
	{"tls-key", "TLSKey", "PEM private key for --tls-cert", false},
	{"handshake-timeout", "HandshakeTimeout", "disconnect a client that has not finished the TLS handshake by then", false},
}

// addConfigFlags defines configFlags on f, each setting its field of cfg.
func addConfigFlags(f *pflag.FlagSet, cfg *engine.Config) {
	defaults := reflect.ValueOf(engine.Config{}.WithDefaults())
	fields := reflect.ValueOf(cfg).Elem()
	for _, cf := range configFlags {
		def := defaults.FieldByName(cf.field).Interface()
		switch p := fields.FieldByName(cf.field).Addr().Interface().(type) {
		case *string:
			f.StringVar(p, cf.name, def.(string), cf.usage)
		case *int:
			f.IntVar(p, cf.name, def.(int), cf.usage)
		case *float64:
			f.Float64Var(p, cf.name, def.(float64), cf.usage)
		case *bool:
			f.BoolVar(p, cf.name, def.(bool), cf.usage)
		case *time.Duration:
			f.DurationVar(p, cf.name, def.(time.Duration), cf.usage)
		default:
			panic(fmt.Sprintf("configFlags: no flag type for engine.Config.%s (%T)", cf.field, p))
		}
	}
}

// checkConfig turns the off flags' 0 into the engine's negative value,
// refusing a negative one, then validates cfg, naming flags in its errors.
// Every field has its default from the flags, so a 0 that Validate
// refuses was typed.
func checkConfig(cfg *engine.Config) error {
	fields := reflect.ValueOf(cfg).Elem()
	for _, cf := range configFlags {
		if !cf.off {
			continue
		}
		v := fields.FieldByName(cf.field)
		want := "a positive number"
		if _, ok := v.Interface().(time.Duration); ok {
			want = "a positive duration"
		}
		var bad, zero bool
		switch v.Kind() {
		case reflect.Int, reflect.Int64:
			bad, zero = v.Int() < 0, v.Int() == 0
			if zero {
				v.SetInt(-1)
			}
		case reflect.Float64:
			bad, zero = v.Float() < 0 || math.IsNaN(v.Float()), v.Float() == 0
			if zero {
				v.SetFloat(-1)
			}
		}
		if bad {
			return fmt.Errorf("--%s %v: want 0 (off) or %s", cf.name, v.Interface(), want)
		}
	}
	return configError(cfg.Validate())
}

// configError renders an engine error about Config fields (an
// engine.FieldError, however wrapped) naming the flags that set them.
func configError(err error) error {
	var fe *engine.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	return flagNamedError{strings.Replace(err.Error(), fe.Error(), fe.Message(flagOf), 1), err}
}

// flagOf returns the flag that sets Config field, or the field's name if
// no flag does.
func flagOf(field string) string {
	for _, cf := range configFlags {
		if cf.field == field {
			return "--" + cf.name
		}
	}
	return "Config." + field
}

// flagNamedError is an error whose message names flags where the engine's
// named Config fields.
type flagNamedError struct {
	msg string
	err error
}

func (e flagNamedError) Error() string { return e.msg }
func (e flagNamedError) Unwrap() error { return e.err }
