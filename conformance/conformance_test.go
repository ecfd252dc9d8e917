package conformance

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestModels runs the suite against every registered model: a new model is
// covered as soon as it registers.
func TestModels(t *testing.T) {
	for _, m := range engine.Models() {
		t.Run(m.Name, func(t *testing.T) { Run(t, m.Name) })
	}
}
