package registry

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// TestMain fails the package's tests if any leaves a goroutine running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func model(t *testing.T, name string) engine.Model {
	t.Helper()
	m, err := engine.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func closeHandler(t *testing.T, h handler.Handler) {
	t.Helper()
	if c, ok := h.(io.Closer); ok {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

func TestAppsAreNamedOnceAndBuildWithTheirDefaults(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range Apps() {
		if a.Name == "" || a.Summary == "" || a.New == nil {
			t.Errorf("app %+v: want a name, a summary and New", a)
		}
		if seen[a.Name] {
			t.Errorf("app %s listed twice", a.Name)
		}
		seen[a.Name] = true
		cfg := engine.Config{Logger: slog.New(slog.DiscardHandler)}
		h, err := Apps().New(a.Name, nil, model(t, "goroutine"), &cfg)
		if err != nil {
			t.Errorf("%s with its defaults: %v", a.Name, err)
			continue
		}
		closeHandler(t, h)
		if cfg.App != a.Name || len(cfg.AppParams) != len(a.FlagNames()) {
			t.Errorf("%s: Config.App %q, AppParams %v; want the app's name and every parameter", a.Name, cfg.App, cfg.AppParams)
		}
	}
	if !seen["echo"] || !seen["chat"] || !seen["work"] {
		t.Errorf("apps %v: want echo, chat and work", seen)
	}
}

func TestLookupNamesTheApps(t *testing.T) {
	_, err := Apps().Lookup("smtp")
	if err == nil || err.Error() != `unknown app "smtp" (have chat, echo, work)` {
		t.Fatalf("Lookup(smtp): %v", err)
	}
}

func TestNewRefusesBadParameters(t *testing.T) {
	for _, tc := range []struct {
		values map[string]string
		want   string
	}{
		{map[string]string{"no-such": "1"}, `app chat has no parameter "no-such"`},
		{map[string]string{"max-frame": "many"}, `--max-frame "many"`},
		{map[string]string{"max-frame": "100"}, "--max-frame 100 is too small for chat"},
		{map[string]string{"framing": "xml"}, "--framing"},
		{map[string]string{"bus": "carrier-pigeon"}, `--bus "carrier-pigeon"`},
		{map[string]string{"bus-replicas": "0"}, "--bus-replicas 0"},
	} {
		cfg := engine.Config{}
		h, err := Apps().New("chat", tc.values, model(t, "goroutine"), &cfg)
		if err == nil {
			closeHandler(t, h)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line with %q", tc.values, err, tc.want)
		}
	}
	cfg := engine.Config{}
	if _, err := Apps().New("chat", map[string]string{"bus": "local"}, model(t, "prefork"), &cfg); err == nil ||
		!strings.Contains(err.Error(), "separate chat") {
		t.Errorf("--bus local under prefork: %v, want a refusal", err)
	}
}

// TestChatDerivesItsFramesFromTheServer: the chat's largest server frame
// is a quarter of the server's MaxPending, as serve documents.
func TestChatDerivesItsFramesFromTheServer(t *testing.T) {
	cfg := engine.Config{MaxPending: 4096}
	h, err := Apps().New("chat", map[string]string{"max-frame": "2000"}, model(t, "goroutine"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeHandler(t, h)
	cfg = engine.Config{MaxPending: 1000}
	if _, err := Apps().New("chat", nil, model(t, "goroutine"), &cfg); err == nil || !strings.Contains(err.Error(), "--max-pending 1000") {
		t.Errorf("MaxPending 1000: %v, want a refusal naming --max-pending", err)
	}
}

// TestChildRebuildsFromTheParentsParameters: a fork or prefork parent's
// chat starts the embedded bus and passes its URL, with every other
// parameter, in Config.AppParams; the child, given the spec, joins that
// bus rather than starting its own.
func TestChildRebuildsFromTheParentsParameters(t *testing.T) {
	cfg := engine.Config{Logger: slog.New(slog.DiscardHandler)}
	parent, err := Apps().New("chat", map[string]string{"framing": "line", "msg-rate": "0"}, model(t, "prefork"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeHandler(t, parent)
	p := cfg.AppParams
	if cfg.App != "chat" || !strings.HasPrefix(p["bus"], "nats://127.0.0.1:") || p["framing"] != "line" || p["msg-rate"] != "0" ||
		p["max-conns"] != "10000" {
		t.Fatalf("App %q, AppParams %v: want the chat, the embedded bus's URL and every parameter", cfg.App, p)
	}
	child, err := Apps().Child(engine.ChildSpec{Model: "prefork", Config: cfg}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeHandler(t, child)
	if ca, ok := child.(*chatApp); !ok || ca.bus.embedded != nil || ca.bus.net == nil {
		t.Fatalf("child handler %T: want a chat on its parent's bus, starting none of its own", child)
	}

	// A child whose parent named no NATS bus is refused, not given one of
	// its own.
	bad := cfg
	bad.AppParams = map[string]string{"bus": "embedded"}
	if _, err := Apps().Child(engine.ChildSpec{Model: "prefork", Config: bad}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a child started its own embedded bus")
	}
}

func TestChildRefusesAnUnknownApp(t *testing.T) {
	_, err := Apps().Child(engine.ChildSpec{Model: "fork", Config: engine.Config{App: "smtp"}}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), `unknown app "smtp"`) {
		t.Fatalf("Child of smtp: %v", err)
	}
}

// TestUnreachableBusIsARuntimeError: valid parameters that fail at run
// time (no NATS server there) are a RuntimeError, which the CLI exits 1
// for, unlike bad parameters.
func TestUnreachableBusIsARuntimeError(t *testing.T) {
	ns, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := ns.URL()
	ns.Shutdown()
	cfg := engine.Config{Logger: slog.New(slog.DiscardHandler)}
	h, err := Apps().New("chat", map[string]string{"bus": url}, model(t, "goroutine"), &cfg)
	if err == nil {
		closeHandler(t, h)
	}
	if !errors.As(err, new(RuntimeError)) {
		t.Fatalf("chat on a bus nobody serves: %v, want a RuntimeError", err)
	}
}

// TestHiddenFlags: the bus's tuning flags stay out of --help,
// the others are in it.
func TestHiddenFlags(t *testing.T) {
	a, err := Apps().Lookup("chat")
	if err != nil {
		t.Fatal(err)
	}
	fs := a.FlagSet()
	for _, name := range a.FlagNames() {
		hidden := strings.HasPrefix(name, "bus-") && name != "bus-replicas"
		if fs.Lookup(name).Hidden != hidden {
			t.Errorf("--%s hidden %v, want %v", name, fs.Lookup(name).Hidden, hidden)
		}
	}
	if d := chat.DefaultOptions(); fs.Lookup("max-frame").DefValue != "1048576" || d.MaxFrame != 1<<20 {
		t.Errorf("--max-frame default %s", fs.Lookup("max-frame").DefValue)
	}
}
