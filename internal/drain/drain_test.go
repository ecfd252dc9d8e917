package drain

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDeadline(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(2e9, 0))
	defer cancel()
	if got := Deadline(ctx, time.Hour); !got.Equal(time.Unix(2e9, 0)) {
		t.Errorf("with a deadline: %v, want the context's", got)
	}
	before := time.Now()
	got := Deadline(context.Background(), time.Hour)
	if got.Before(before.Add(time.Hour)) || got.After(time.Now().Add(time.Hour)) {
		t.Errorf("without a deadline: %v, want an hour from now", got)
	}
}

func TestCut(t *testing.T) {
	if err := Cut(context.Background(), "drain cut short"); !errors.Is(err, context.DeadlineExceeded) || err.Error() != "shutdown: drain cut short: context deadline exceeded" {
		t.Errorf("drain timeout passed: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Cut(ctx, "drain cut short"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

func TestWait(t *testing.T) {
	done := make(chan struct{})
	close(done)
	if !Wait(context.Background(), done, time.Now().Add(time.Hour)) {
		t.Error("done already: want true")
	}
	if Wait(context.Background(), make(chan struct{}), time.Now().Add(10*time.Millisecond)) {
		t.Error("deadline passed: want false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, make(chan struct{}), time.Now().Add(time.Hour)) {
		t.Error("cancelled: want false")
	}
}
