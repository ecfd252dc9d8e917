package natsbus

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// newBareLink is a link with no NATS connection, enough to feed handleData
// the control messages that need none.
func newBareLink() *link {
	return &link{
		subj:      newSubjects(DefaultPrefix),
		node:      &countNode{},
		stats:     &counters{},
		rooms:     map[string]*roomSub{},
		seen:      map[string]map[uint64]position{},
		heard:     map[uint64]time.Time{},
		done:      map[uint64]bool{},
		doneLimit: maxHeard,
	}
}

func quiescedMarker(l *link, origin uint64) *nats.Msg {
	return &nats.Msg{Subject: l.subj.quiesced, Data: binary.BigEndian.AppendUint64(nil, origin)}
}

// TestQuiescedMarkersAreBounded: a node that shares no rooms with the
// nodes that stop (a fork or prefork parent, which hears a quiesced marker
// from every connection's child) keeps a bounded number of markers, and
// still has the marker of an origin it heard from recently.
func TestQuiescedMarkersAreBounded(t *testing.T) {
	l := newBareLink()
	const heardOrigin = 1
	l.seenMu.Lock()
	l.hear(heardOrigin)
	l.seenMu.Unlock()
	l.handleData(quiescedMarker(l, heardOrigin))
	const markers = 10 * maxHeard
	for o := uint64(2); o < markers; o++ {
		if o%1000 == 0 {
			// Heard from "just now" is within drainActive (2 s) of each
			// eviction: 40,000 markers under -race on a loaded machine
			// take longer than that.
			l.seenMu.Lock()
			l.hear(heardOrigin)
			l.seenMu.Unlock()
		}
		l.handleData(quiescedMarker(l, o))
	}
	l.seenMu.Lock()
	size, kept := len(l.done), l.done[heardOrigin]
	l.seenMu.Unlock()
	if size > maxHeard {
		t.Errorf("%d markers from origins never heard left %d in memory; want at most %d", markers, size, maxHeard)
	}
	if !kept {
		t.Error("the marker of an origin heard from just now was forgotten")
	}
	if !l.allQuiesced(time.Now()) {
		t.Error("allQuiesced is false though the only origin heard from has quiesced")
	}
}
