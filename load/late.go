package load

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Pacing is a paced run's account of its own schedule (open loop, and the
// chat senders): an open loop's "corrected" latency counts from each
// message's due time, so a generator that sends late (its timers wake
// late, its goroutines wait for a CPU) adds its own lateness to the
// latency it blames on the server. Its fields are empty in closed loop.
type Pacing struct {
	// SendLate is how late the generator sent its scheduled messages, in
	// microseconds: for each, from when it could have gone out (its due
	// time, or when the previous reply arrived if that was later: a
	// connection keeps one message in flight) to when the generator
	// wrote it. This is the client's own delay, not the server's.
	SendLate *Percentiles `json:"send_late_us,omitempty"`
	// DueMsgs counts the messages the schedule had due before the
	// deadline: Rate over Duration, less what a connect rate defers.
	// SentMsgs counts those sent.
	DueMsgs  uint64 `json:"due_msgs,omitempty"`
	SentMsgs uint64 `json:"sent_msgs,omitempty"`
	// AchievedRate is SentMsgs a second over Result.Window: the rate
	// reached. Below 95% of the due messages, the run warns.
	AchievedRate float64 `json:"achieved_rate,omitempty"`
}

// Thresholds of the pacing warnings.
const (
	// lateShare: warn when the send lateness's p50 or p99 is at least this
	// share of the latency's.
	lateShare = 0.25
	// rateShare: warn when fewer than this share of the due messages were
	// sent.
	rateShare = 0.95
)

// schedule collects the pacers' lateness and counts, for Pacing. Pacers
// record into a local batch and flush into one of a few locked shards, as
// the latency recorder does; a shard's histogram is made on first use, so
// a closed-loop run allocates none.
type schedule struct {
	shards    []lateShard
	due, sent atomic.Uint64
}

type lateShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newSchedule(conns int) *schedule {
	return &schedule{shards: make([]lateShard, min(max(conns, 1), maxShards))}
}

// pace returns a pacer for the run whose first message is due at first,
// and the next ones every interval after it, and counts the messages due
// before the deadline. id picks the lateness shard.
func (r *run) pace(first time.Time, interval time.Duration, id int) *pacer {
	interval = max(interval, time.Nanosecond)
	if first.Before(r.deadline) {
		r.sched.due.Add(uint64((r.deadline.Sub(first)-1)/interval) + 1)
	}
	// next adds an interval before each message, the first included.
	return &pacer{due: first.Add(-interval), interval: interval, late: lateBatch{s: r.sched, shard: &r.sched.shards[id%len(r.sched.shards)]}}
}

// lateBatch is one pacer's unflushed send lateness.
type lateBatch struct {
	s     *schedule
	shard *lateShard
	n     int
	late  [batchLen]int64
}

// add records one message sent late by d.
func (b *lateBatch) add(d time.Duration) {
	b.late[b.n] = int64(d)
	b.n++
	if b.n == batchLen {
		b.flush()
	}
}

func (b *lateBatch) flush() {
	if b.n == 0 || b.s == nil {
		return
	}
	b.shard.mu.Lock()
	if b.shard.h == nil {
		b.shard.h = newHist()
	}
	for _, v := range b.late[:b.n] {
		b.shard.h.RecordValue(clamp(v))
	}
	b.shard.mu.Unlock()
	b.s.sent.Add(uint64(b.n))
	b.n = 0
}

// fill adds the pacing numbers and their warnings to res, after the
// latencies and the window are in it. Call it once every pacer is stopped.
func (s *schedule) fill(res *Result) {
	due, sent := s.due.Load(), s.sent.Load()
	if due == 0 && sent == 0 {
		return // closed loop
	}
	hs := make([]*hdrhistogram.Histogram, len(s.shards))
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		hs[i] = sh.h
		sh.mu.Unlock()
	}
	h := sum(hs)
	late := summarise(h)
	res.SendLate, res.DueMsgs, res.SentMsgs = &late, due, sent
	if res.Window > 0 {
		res.AchievedRate = float64(sent) / res.Window
	}
	if lat := res.Latency; late.Count > 0 && lat.Count > 0 && (late.P50 >= lateShare*lat.P50 || late.P99 >= lateShare*lat.P99) {
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"the generator itself sent late by %s at p50 and %s at p99, against a latency of %s and %s it reports: at least %.0f%% of it may be the client's own timers and scheduling, not the server (send_late_us)",
			us(late.P50), us(late.P99), us(lat.P50), us(lat.P99), 100*lateShare))
	}
	if !res.Interrupted && due > 0 && float64(sent) < rateShare*float64(due) {
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"the generator sent %d of the %d messages due (%.1f%%): it reached %.0f/s of --rate %g; the client or the server could not keep the rate",
			sent, due, 100*float64(sent)/float64(due), res.AchievedRate, res.Rate))
	}
}

// pacingSummary adds the schedule's line to a summary.
func (res *Result) pacingSummary(b *strings.Builder) {
	if res.SendLate == nil {
		return
	}
	fmt.Fprintf(b, "\nschedule     sent %d of %d due (%.0f/s)  sent late p50 %s  p99 %s  max %s",
		res.SentMsgs, res.DueMsgs, res.AchievedRate, us(res.SendLate.P50), us(res.SendLate.P99), us(res.SendLate.Max))
}
