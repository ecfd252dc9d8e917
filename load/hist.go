package load

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: nanoseconds from 1 ns to 10 minutes, 3 significant
// digits (0.1% resolution). Slower answers are recorded as 10 minutes.
const (
	histMax    = int64(10 * time.Minute)
	histDigits = 3
	maxShards  = 16
	batchLen   = 64
)

// Percentiles summarises a latency histogram, in microseconds.
type Percentiles struct {
	// Count is the number of latencies recorded.
	Count int64 `json:"count"`
	// Mean is their average.
	Mean float64 `json:"mean"`
	// P50, P90, P99 and P999 are the 50th, 90th, 99th and 99.9th
	// percentiles.
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	// Max is the largest latency.
	Max float64 `json:"max"`
}

func summarise(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	v := h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1e3,
		P50:   us(v[50]),
		P90:   us(v[90]),
		P99:   us(v[99]),
		P999:  us(v[99.9]),
		Max:   us(h.Max()),
	}
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, histDigits) }

// recorder collects latencies from every connection. Connections record
// into a local batch and flush it into one of a few locked shards, so a
// fast closed loop takes a lock once per 64 messages; counters are shared
// atomics updated at the same time.
type recorder struct {
	shards []shard
	msgs   atomic.Uint64
	bytes  atomic.Uint64
	// last is when the latest message completed, in nanoseconds from the
	// run's start.
	last atomic.Int64
}

type shard struct {
	mu        sync.Mutex
	corrected *hdrhistogram.Histogram // from the time a message was due
	raw       *hdrhistogram.Histogram // from the time it was sent
}

func newRecorder(conns int) *recorder {
	r := &recorder{shards: make([]shard, min(conns, maxShards))}
	for i := range r.shards {
		r.shards[i].corrected, r.shards[i].raw = newHist(), newHist()
	}
	return r
}

// batch is one connection's unflushed latencies. It is not safe for
// concurrent use.
type batch struct {
	r     *recorder
	s     *shard
	n     int
	bytes uint64
	last  time.Duration // the latest completion added, from the run's start
	due   [batchLen]int64
	sent  [batchLen]int64
}

func (r *recorder) batch(conn int) *batch {
	return &batch{r: r, s: &r.shards[conn%len(r.shards)]}
}

// add records one message of size bytes that completed at, counted from the
// run's start: fromDue is its latency from the time it was due, fromSent
// from the time it was written.
func (b *batch) add(at, fromDue, fromSent time.Duration, size int) {
	b.due[b.n], b.sent[b.n] = int64(fromDue), int64(fromSent)
	b.last = max(b.last, at)
	b.bytes += uint64(size)
	b.n++
	if b.n == batchLen {
		b.flush()
	}
}

func (b *batch) flush() {
	if b.n == 0 {
		return
	}
	b.s.mu.Lock()
	for i := range b.n {
		b.s.corrected.RecordValue(clamp(b.due[i]))
		b.s.raw.RecordValue(clamp(b.sent[i]))
	}
	b.s.mu.Unlock()
	b.r.msgs.Add(uint64(b.n))
	b.r.bytes.Add(b.bytes)
	for {
		old := b.r.last.Load()
		if int64(b.last) <= old || b.r.last.CompareAndSwap(old, int64(b.last)) {
			break
		}
	}
	b.n, b.bytes = 0, 0
}

func clamp(ns int64) int64 { return max(1, min(ns, histMax)) }

// merged returns the corrected and uncorrected percentiles over every
// shard. Call it after every batch is flushed.
func (r *recorder) merged() (corrected, raw Percentiles) {
	c, u := make([]*hdrhistogram.Histogram, len(r.shards)), make([]*hdrhistogram.Histogram, len(r.shards))
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		c[i], u[i] = s.corrected, s.raw
		s.mu.Unlock()
	}
	return summarise(sum(c)), summarise(sum(u))
}

// sum returns a histogram of every value in hs, which newHist made (they
// share one geometry). It adds their bucket counts, where Merge would
// record each bucket of each again: a hundred times faster for mostly
// empty histograms, which matters under the race detector.
func sum(hs []*hdrhistogram.Histogram) *hdrhistogram.Histogram {
	var total *hdrhistogram.Snapshot
	for _, h := range hs {
		if h == nil {
			continue
		}
		s := h.Export()
		if total == nil {
			total = s
			continue
		}
		for i, n := range s.Counts {
			total.Counts[i] += n
		}
	}
	if total == nil {
		return newHist()
	}
	return hdrhistogram.Import(total)
}
