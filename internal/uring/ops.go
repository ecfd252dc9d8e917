//go:build linux

package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes used here.
const (
	opNop         = 0
	opRead        = 22
	opAccept      = 13
	opAsyncCancel = 14
	opClose       = 19
	opSend        = 26
	opRecv        = 27
)

// SQE flags.
const (
	sqeBufferSelect = 1 << 5
	// SQECQESkipSuccess asks for no completion when the operation
	// succeeds: only a failure is reported.
	SQECQESkipSuccess = 1 << 6
)

// Ioprio bits for accept and recv.
const (
	acceptMultishot = 1 << 0
	recvMultishot   = 1 << 1
)

// CQE flags.
const (
	cqeFBuffer = 1 << 0
	cqeFMore   = 1 << 1
	// cqeBufferShift is where a provided buffer's id sits in CQE.flags.
	cqeBufferShift = 16
)

// BufferID returns the provided buffer a completion used, if any.
func (c *CQE) BufferID() (uint16, bool) {
	return uint16(c.flags >> cqeBufferShift), c.flags&cqeFBuffer != 0
}

// More reports whether a multishot operation stays armed after this
// completion.
func (c *CQE) More() bool { return c.flags&cqeFMore != 0 }

// PrepAccept fills sqe with an accept on the listening socket fd. The new
// sockets are non-blocking and close-on-exec. With multishot, one
// submission keeps producing completions (each with CQEFMore) until one
// arrives without it.
func (sqe *SQE) PrepAccept(fd int, multishot bool, userData uint64) {
	sqe.opcode = opAccept
	sqe.fd = int32(fd)
	sqe.opFlags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	if multishot {
		sqe.ioprio = acceptMultishot
	}
	sqe.userData = userData
}

// PrepRecvSelect fills sqe with a receive on fd into a buffer the kernel
// picks from the provided-buffer group.
func (sqe *SQE) PrepRecvSelect(fd int, group uint16, multishot bool, userData uint64) {
	sqe.opcode = opRecv
	sqe.fd = int32(fd)
	sqe.Flags = sqeBufferSelect
	sqe.bufIndex = group
	if multishot {
		sqe.ioprio = recvMultishot
	}
	sqe.userData = userData
}

// PrepSend fills sqe with a send of the n bytes at p on fd. The memory
// must stay valid and unmoved until the completion: use memory outside the
// Go heap or keep it referenced and pinned.
func (sqe *SQE) PrepSend(fd int, p unsafe.Pointer, n int, userData uint64) {
	sqe.prepRW(opSend, fd, p, n, userData)
	sqe.opFlags = unix.MSG_NOSIGNAL
}

// PrepRead fills sqe with a read of up to n bytes at p from fd at the
// current file position.
func (sqe *SQE) PrepRead(fd int, p unsafe.Pointer, n int, userData uint64) {
	sqe.prepRW(opRead, fd, p, n, userData)
	sqe.off = ^uint64(0) // -1: the current position
}

// prepRW fills in what a read or a write on fd of the n bytes at p shares.
func (sqe *SQE) prepRW(op uint8, fd int, p unsafe.Pointer, n int, userData uint64) {
	sqe.opcode = op
	sqe.fd = int32(fd)
	sqe.addr = uint64(uintptr(p))
	sqe.len = uint32(n)
	sqe.userData = userData
}

// PrepClose fills sqe with a close of fd.
func (sqe *SQE) PrepClose(fd int, userData uint64) {
	sqe.opcode = opClose
	sqe.fd = int32(fd)
	sqe.userData = userData
}

// PrepCancel fills sqe with a cancellation of the request whose user data
// is target.
func (sqe *SQE) PrepCancel(target, userData uint64) {
	sqe.opcode = opAsyncCancel
	sqe.addr = target
	sqe.userData = userData
}

const registerPbufRing = 22

// bufReg mirrors struct io_uring_buf_reg (40 bytes).
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// BufRing is a ring of provided buffers registered with a Ring: the kernel
// takes a buffer for each receive, and the owner gives it back with
// RecycleLater and Publish once the bytes are consumed. Both the ring and the buffers live
// in anonymous mappings outside the Go heap.
type BufRing struct {
	ringMem []byte // entries * 16 bytes of struct io_uring_buf
	bufMem  []byte // entries * size bytes of buffers
	size    int
	mask    uint16
	tail    uint16
}

// RegisterBufRing maps entries buffers of size bytes each (entries a power
// of two, at most 32768) and registers them as buffer group group. All
// buffers start out provided to the kernel.
func (r *Ring) RegisterBufRing(entries, size int, group uint16) (*BufRing, error) {
	if entries < 1 || entries > 1<<15 || entries&(entries-1) != 0 {
		return nil, fmt.Errorf("buffer ring: %d entries: want a power of two up to 32768", entries)
	}
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_POPULATE
	ringMem, err := unix.Mmap(-1, 0, entries*16, prot, flags)
	if err != nil {
		return nil, fmt.Errorf("buffer ring: mmap: %w", err)
	}
	// The buffers are not populated: a page counts in RSS once the kernel
	// has written to it.
	bufMem, err := unix.Mmap(-1, 0, entries*size, prot, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		unix.Munmap(ringMem)
		return nil, fmt.Errorf("buffer ring: mmap buffers: %w", err)
	}
	b := &BufRing{ringMem: ringMem, bufMem: bufMem, size: size, mask: uint16(entries - 1)}
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&ringMem[0]))), ringEntries: uint32(entries), bgid: group}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	if errno != 0 {
		b.unmap()
		return nil, fmt.Errorf("%w: register buffer ring: %s", ErrUnavailable, errno.Error())
	}
	for id := range entries {
		b.add(uint16(id))
	}
	b.publish()
	return b, nil
}

// Bytes returns the first n bytes of buffer id.
func (b *BufRing) Bytes(id uint16, n int) []byte {
	off := int(id) * b.size
	return b.bufMem[off : off+n : off+b.size]
}

// add writes buffer id into the next ring slot without publishing it.
func (b *BufRing) add(id uint16) {
	slot := unsafe.Pointer(&b.ringMem[int(b.tail&b.mask)*16])
	*(*uint64)(slot) = uint64(uintptr(unsafe.Pointer(&b.bufMem[int(id)*b.size])))
	*(*uint32)(unsafe.Add(slot, 8)) = uint32(b.size)
	*(*uint16)(unsafe.Add(slot, 12)) = id
	b.tail++
}

// publish stores the ring's tail, a uint16 overlaying the reserved field of
// slot 0 (bytes 14-15), with release ordering: a 32-bit atomic store of
// slot 0's bid and the tail together. Only this goroutine writes either.
func (b *BufRing) publish() {
	word := (*uint32)(unsafe.Pointer(&b.ringMem[12]))
	bid0 := atomic.LoadUint32(word) & 0xffff
	atomic.StoreUint32(word, bid0|uint32(b.tail)<<16)
}

// RecycleLater queues buffer id to be given back at the next Publish, so
// a batch of completions costs one release store.
func (b *BufRing) RecycleLater(id uint16) { b.add(id) }

// Publish gives the kernel every buffer queued by RecycleLater.
func (b *BufRing) Publish() { b.publish() }

func (b *BufRing) unmap() {
	unix.Munmap(b.bufMem)
	unix.Munmap(b.ringMem)
}

// Free unmaps the buffers. Call it only after the ring is closed.
func (b *BufRing) Free() { b.unmap() }
