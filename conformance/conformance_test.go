package conformance

import (
	"testing"

	"github.com/tcplab/tcplab/engine"
)

// TestMain serves as a fork or prefork child when the test binary is
// re-executed as one, and otherwise runs the tests under goleak.
func TestMain(m *testing.M) { Main(m) }

// TestModels runs the suite against every registered model: a new model is
// covered as soon as it registers.
func TestModels(t *testing.T) {
	for _, m := range engine.Models() {
		t.Run(m.Name, func(t *testing.T) { Run(t, m.Name) })
	}
}
