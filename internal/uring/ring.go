//go:build linux

// Package uring is a minimal io_uring binding on raw syscalls: ring setup
// and mapping, submission and completion queues, the few operations a TCP
// server needs, and ring-mapped provided buffers. It has no dependency
// beyond golang.org/x/sys/unix; no third-party io_uring module is used.
//
// A Ring is not safe for concurrent use: one goroutine, locked to its OS
// thread, drives it (required by SetupSingleIssuer and DeferTaskrun).
//
// Memory the kernel reads or writes asynchronously (the rings, the
// provided buffers) is mapped with mmap outside the Go heap, so the
// garbage collector never moves or frees it. Callers must likewise keep
// send buffers alive and unmoved until the completion arrives; user_data
// carries plain integers, never Go pointers.
package uring

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Setup flags (io_uring_params.flags) for New.
const (
	// SetupRDisabled creates the ring disabled: Enable starts it.
	SetupRDisabled = 1 << 6
	// SetupSubmitAll keeps submitting a batch past an entry that fails.
	SetupSubmitAll = 1 << 7
	// SetupSingleIssuer promises one submitting thread.
	SetupSingleIssuer = 1 << 12
	// SetupDeferTaskrun runs completion work only inside Enter.
	SetupDeferTaskrun = 1 << 13

	setupCQSize = 1 << 3
)

// Features reported by the kernel (io_uring_params.features).
const (
	featSingleMmap = 1 << 0
	featExtArg     = 1 << 8
)

const (
	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	registerEnableRings = 12

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	sqeSize = 64
	cqeSize = 16
)

// ErrUnavailable is wrapped by New when the kernel refuses io_uring; the
// message names the cause.
var ErrUnavailable = errors.New("io_uring unavailable")

// params mirrors struct io_uring_params (120 bytes).
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqringOffsets
	cqOff        cqringOffsets
}

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// SQE mirrors struct io_uring_sqe (64 bytes). Its Prep methods fill it;
// Flags takes the SQE flags (SQECQESkipSuccess) on top.
type SQE struct {
	opcode      uint8
	Flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// CQE mirrors struct io_uring_cqe (16 bytes).
type CQE struct {
	// UserData is the user data of the submission it completes.
	UserData uint64
	// Res is the operation's result: a count, a descriptor, or -errno.
	Res   int32
	flags uint32
}

// Ring is one io_uring instance with its mapped queues.
type Ring struct {
	fd int

	sqMem, cqMem, sqeMem []byte

	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer // uint32[sqEntries]
	sqes                   unsafe.Pointer // SQE[sqEntries]
	sqEntries              uint32
	sqPending              uint32 // SQEs filled since the last Enter
	sqLocalTail            uint32

	cqHead, cqTail, cqMask *uint32
	cqes                   unsafe.Pointer // CQE[cqEntries]
	cqEntries              uint32

	// wait is a small mapping for io_uring_enter's extended argument
	// (struct io_uring_getevents_arg, then a struct __kernel_timespec),
	// outside the Go heap like everything else the kernel reads.
	wait []byte
}

// New creates a ring with room for entries submissions and cqEntries
// completions (0: twice entries), and the given setup flags. A larger
// completion queue suits a server whose many connections complete
// operations in the same pass.
func New(entries, cqEntries uint32, flags uint32) (*Ring, error) {
	p := params{flags: flags}
	if cqEntries > 0 {
		p.flags |= setupCQSize
		p.cqEntries = cqEntries
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, setupError(errno)
	}
	r := &Ring{fd: int(fd), sqEntries: p.sqEntries, cqEntries: p.cqEntries}
	if err := r.mmap(&p); err != nil {
		unix.Close(r.fd)
		return nil, err
	}
	if p.features&featExtArg == 0 {
		r.Close()
		return nil, fmt.Errorf("%w: the kernel lacks IORING_FEAT_EXT_ARG (timed waits; Linux 5.11)", ErrUnavailable)
	}
	return r, nil
}

// setupError explains why io_uring_setup failed, naming the likely cause.
func setupError(errno unix.Errno) error {
	cause := errno.Error()
	switch errno {
	case unix.ENOSYS:
		cause = "the kernel has no io_uring (ENOSYS)"
	case unix.EPERM, unix.EACCES:
		cause = fmt.Sprintf("io_uring is not permitted (%s)", errno.Error())
		if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil {
			if v := strings.TrimSpace(string(b)); v != "0" {
				cause += "; kernel.io_uring_disabled=" + v
			} else {
				cause += "; likely a seccomp filter"
			}
		}
	case unix.EINVAL:
		cause = "the kernel rejected the ring parameters (EINVAL): too old for the setup flags?"
	}
	return fmt.Errorf("%w: io_uring_setup: %s", ErrUnavailable, cause)
}

func (r *Ring) mmap(p *params) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*cqeSize
	if p.features&featSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("mmap SQ ring: %w", err)
	}
	r.cqMem = r.sqMem
	if p.features&featSingleMmap == 0 {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			r.unmap()
			return fmt.Errorf("mmap CQ ring: %w", err)
		}
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*sqeSize, prot, flags); err != nil {
		r.unmap()
		return fmt.Errorf("mmap SQEs: %w", err)
	}
	if r.wait, err = unix.Mmap(-1, 0, waitArgSize+16, prot, unix.MAP_ANON|unix.MAP_PRIVATE); err != nil {
		r.unmap()
		return fmt.Errorf("mmap wait argument: %w", err)
	}
	sq, cq := unsafe.Pointer(&r.sqMem[0]), unsafe.Pointer(&r.cqMem[0])
	r.sqHead = (*uint32)(unsafe.Add(sq, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(sq, p.sqOff.tail))
	r.sqMask = (*uint32)(unsafe.Add(sq, p.sqOff.ringMask))
	r.sqArray = unsafe.Add(sq, p.sqOff.array)
	r.sqes = unsafe.Pointer(&r.sqeMem[0])
	r.cqHead = (*uint32)(unsafe.Add(cq, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(cq, p.cqOff.tail))
	r.cqMask = (*uint32)(unsafe.Add(cq, p.cqOff.ringMask))
	r.cqes = unsafe.Add(cq, p.cqOff.cqes)
	r.sqLocalTail = atomic.LoadUint32(r.sqTail)
	return nil
}

func (r *Ring) unmap() {
	if r.wait != nil {
		unix.Munmap(r.wait)
	}
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.cqMem != nil && &r.cqMem[0] != &r.sqMem[0] {
		unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	r.sqMem, r.cqMem, r.sqeMem, r.wait = nil, nil, nil, nil
}

// Close unmaps the queues and closes the ring. Operations still in flight
// are cancelled by the kernel.
func (r *Ring) Close() error {
	r.unmap()
	return unix.Close(r.fd)
}

// GetSQE returns the next free submission entry, zeroed, or nil when the
// submission queue is full (call Enter first).
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqLocalTail-head >= r.sqEntries {
		return nil
	}
	idx := r.sqLocalTail & *r.sqMask
	sqe := (*SQE)(unsafe.Add(r.sqes, uintptr(idx)*sqeSize))
	*sqe = SQE{}
	*(*uint32)(unsafe.Add(r.sqArray, uintptr(idx)*4)) = idx
	r.sqLocalTail++
	r.sqPending++
	return sqe
}

// waitArgSize is sizeof(struct io_uring_getevents_arg).
const waitArgSize = 24

// Enter submits the filled entries and runs the kernel's completion work
// (with SetupDeferTaskrun that happens only here), then waits until at
// least waitNr completions are available or timeout passes (timeout < 0:
// no limit). A wait cut short by the timeout is not an error. A signal
// (Go preempts goroutines with them) interrupts the wait: the kernel then
// returns EINTR, which Enter retries, unless the call submitted entries,
// when it returns their count early, as for a timeout. It returns the
// number of entries the kernel consumed.
func (r *Ring) Enter(waitNr uint32, timeout time.Duration) (int, error) {
	atomic.StoreUint32(r.sqTail, r.sqLocalTail) // release: entries before tail
	flags := uintptr(enterGetEvents)
	var arg uintptr
	if waitNr > 0 && timeout >= 0 {
		// struct io_uring_getevents_arg {sigmask, sigmask_sz, min_wait_usec, ts}
		// followed by the timespec it points to.
		base := unsafe.Pointer(&r.wait[0])
		ts := unsafe.Add(base, waitArgSize)
		*(*int64)(ts) = int64(timeout / time.Second)
		*(*int64)(unsafe.Add(ts, 8)) = int64(timeout % time.Second)
		*(*uint64)(base) = 0
		*(*uint32)(unsafe.Add(base, 8)) = 0
		*(*uint32)(unsafe.Add(base, 12)) = 0
		*(*uint64)(unsafe.Add(base, 16)) = uint64(uintptr(ts))
		flags |= enterExtArg
		arg = uintptr(base)
	}
	for {
		var n uintptr
		var errno unix.Errno
		if waitNr == 0 {
			// Cannot sleep: skip the scheduler's system-call bookkeeping.
			n, _, errno = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.sqPending), 0, flags, arg, waitArgSize)
		} else {
			n, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.sqPending), uintptr(waitNr), flags, arg, waitArgSize)
		}
		switch errno {
		case 0:
			r.sqPending -= uint32(n)
			return int(n), nil
		case unix.EINTR:
			continue // Go's preemption signals interrupt waits often
		case unix.ETIME:
			return 0, nil // the timeout passed with nothing submitted or completed
		case unix.EAGAIN, unix.EBUSY:
			// Completions are backed up: the caller must reap first.
			return 0, nil
		default:
			return 0, fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// Enable starts a ring created with SetupRDisabled. With
// SetupSingleIssuer, the calling thread becomes the only one allowed to
// submit, so a ring can be created (and fail early) on one thread and be
// driven from another, locked, thread.
func (r *Ring) Enable() error {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEnableRings, 0, 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_register ENABLE_RINGS: %w", errno)
	}
	return nil
}

// Reap appends every completion available now to dst, marks them
// consumed, and returns the extended slice. Copying them out frees the
// completion queue before they are handled, so a handler may submit (and
// the kernel complete) more work meanwhile.
func (r *Ring) Reap(dst []CQE) []CQE {
	head := *r.cqHead // only this goroutine writes the head
	tail := atomic.LoadUint32(r.cqTail)
	mask := *r.cqMask
	for ; head != tail; head++ {
		dst = append(dst, *(*CQE)(unsafe.Add(r.cqes, uintptr(head&mask)*cqeSize)))
	}
	atomic.StoreUint32(r.cqHead, head)
	return dst
}
