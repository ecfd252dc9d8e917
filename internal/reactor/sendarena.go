package reactor

import "github.com/tcplab/tcplab/internal/uring"

// sendArena is a loop's send slots: chunks of per slots of size bytes,
// each its own anonymous mapping (a uring.Arena), outside the Go heap. A
// connection holds a slot from the copy of its bytes until the kernel has
// completed the send, and has at most one send in flight, so the slots a
// loop needs are at most its connections with a send in flight. A peer
// that does not read holds its slot until the write timeout; so that it
// cannot hold up anyone else, get maps another chunk when every slot is
// taken, rather than make the connection wait.
//
// Slots come from the lowest chunk with one free, last freed first, and a
// mapping's pages are touched only as slots are used, so a lightly loaded
// loop reuses the same few pages of the first chunk and RSS follows the
// slots actually in use. The highest chunk is unmapped as soon as it is
// empty, while the others keep half a chunk free (so a load that hovers
// at a chunk's edge does not map and unmap on every send); a chunk with a
// send in flight is never unmapped. The first chunk stays.
//
// Only the loop's goroutine touches it.
type sendArena struct {
	per, size int
	chunks    []*uring.Arena
	used      int // slots taken
	// mapChunk maps a chunk: uring.NewArena (tests make it fail).
	mapChunk func(slots, size int) (*uring.Arena, error)
}

// newSendArena maps the first chunk of per slots of size bytes.
func newSendArena(per, size int) (*sendArena, error) {
	a := &sendArena{per: per, size: size, mapChunk: uring.NewArena}
	ch, err := a.mapChunk(per, size)
	if err != nil {
		return nil, err
	}
	a.chunks = append(a.chunks, ch)
	return a, nil
}

// get takes a free slot, mapping another chunk if every slot is taken. It
// fails only if that mapping fails.
func (a *sendArena) get() (int, error) {
	if a.used < len(a.chunks)*a.per {
		for ci, ch := range a.chunks {
			if i, ok := ch.Get(); ok {
				a.used++
				return ci*a.per + i, nil
			}
		}
	}
	ch, err := a.mapChunk(a.per, a.size)
	if err != nil {
		return -1, err
	}
	a.chunks = append(a.chunks, ch)
	i, _ := ch.Get()
	a.used++
	return (len(a.chunks)-1)*a.per + i, nil
}

// put gives slot i back, and unmaps empty chunks at the top while the
// rest keep half a chunk free.
func (a *sendArena) put(i int) {
	a.chunks[i/a.per].Put(i % a.per)
	a.used--
	for n := len(a.chunks); n > 1 && a.chunks[n-1].Available() == a.per &&
		(n-1)*a.per-a.used >= max(1, a.per/2); n-- {
		a.chunks[n-1].Free()
		a.chunks[n-1] = nil
		a.chunks = a.chunks[:n-1]
	}
}

// slot returns slot i's memory.
func (a *sendArena) slot(i int) []byte { return a.chunks[i/a.per].Slot(i % a.per) }

// available returns the number of free slots in the chunks mapped.
func (a *sendArena) available() int { return len(a.chunks)*a.per - a.used }

// free unmaps every chunk. Call it only when no send is in flight.
func (a *sendArena) free() {
	for _, ch := range a.chunks {
		ch.Free()
	}
	a.chunks = nil
}
