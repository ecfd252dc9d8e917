package testkit

import (
	"slices"
	"time"
)

// WakeProbe measures how late this process wakes up while it runs: a
// goroutine sleeps 1 ms at a time and records by how much each sleep
// overran. The returned stop ends it and returns the median and the 99th
// percentile of the overruns. On a machine with a core to spare both are
// well under a millisecond; on one whose run queue is long (seen here:
// load average 20 on 2 cores) every wake-up of every process waits
// milliseconds for a CPU, and a throughput or a latency measured then is
// the machine's, not the code's. A test that compares or bounds them runs
// the probe beside its measurement, and counts only a quiet attempt.
func WakeProbe() (stop func() (p50, p99 time.Duration)) {
	done := make(chan struct{})
	result := make(chan []time.Duration, 1)
	go func() {
		var late []time.Duration
		for {
			select {
			case <-done:
				result <- late
				return
			default:
			}
			start := time.Now()
			time.Sleep(time.Millisecond)
			late = append(late, time.Since(start)-time.Millisecond)
		}
	}()
	return func() (p50, p99 time.Duration) {
		close(done)
		late := <-result
		if len(late) == 0 {
			return 0, 0
		}
		slices.Sort(late)
		return late[len(late)/2], late[len(late)*99/100]
	}
}
