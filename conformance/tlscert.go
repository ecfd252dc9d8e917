package conformance

import (
	"testing"

	"github.com/tcplab/tcplab/internal/testkit/testcert"
)

// TestCert is a throwaway certificate authority and a server certificate
// it signed for 127.0.0.1, ::1 and localhost, made at test time and
// written as PEM files to the test's temporary directory (its fields:
// testcert.Cert).
type TestCert = testcert.Cert

// NewTestCert makes a TestCert valid for an hour.
func NewTestCert(t testing.TB) TestCert { return testcert.New(t) }
