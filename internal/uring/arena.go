//go:build linux

package uring

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Arena is a set of fixed-size slots in one anonymous mapping outside the
// Go heap, for bytes the kernel reads after the call that hands them over
// returns (a send's payload): the garbage collector neither moves nor
// frees them, whatever happens to the Go values that held the bytes.
//
// Slots are handed out last-freed first, so a lightly loaded owner keeps
// reusing the same few pages: the mapping is not populated up front, and
// only the pages of slots ever used count in the process's RSS.
//
// An Arena is not safe for concurrent use.
type Arena struct {
	mem  []byte
	size int
	free []int32 // a stack of free slot indexes
}

// NewArena maps slots slots of size bytes each.
func NewArena(slots, size int) (*Arena, error) {
	if slots < 1 || size < 1 {
		return nil, fmt.Errorf("arena: %d slots of %d bytes: want at least one of one", slots, size)
	}
	mem, err := unix.Mmap(-1, 0, slots*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("arena: mmap %d bytes: %w", slots*size, err)
	}
	a := &Arena{mem: mem, size: size, free: make([]int32, slots)}
	for i := range a.free {
		a.free[i] = int32(slots - 1 - i) // slot 0 on top
	}
	return a, nil
}

// Get takes a free slot. It reports false when every slot is in use.
func (a *Arena) Get() (int, bool) {
	n := len(a.free)
	if n == 0 {
		return -1, false
	}
	i := a.free[n-1]
	a.free = a.free[:n-1]
	return int(i), true
}

// Put gives slot i back.
func (a *Arena) Put(i int) { a.free = append(a.free, int32(i)) }

// Slot returns slot i's memory.
func (a *Arena) Slot(i int) []byte {
	off := i * a.size
	return a.mem[off : off+a.size : off+a.size]
}

// Available returns the number of free slots.
func (a *Arena) Available() int { return len(a.free) }

// Free unmaps the arena. Call it only when the kernel can no longer read
// any slot: every operation using one has completed, or the ring is closed.
func (a *Arena) Free() {
	if a.mem != nil {
		unix.Munmap(a.mem)
		a.mem = nil
	}
}
