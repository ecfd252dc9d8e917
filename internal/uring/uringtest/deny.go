//go:build linux

// Package uringtest lets tests see what a program does where the kernel
// refuses io_uring, without faking the refusal: DenyIOUring installs a
// real seccomp filter, the way container runtimes block io_uring, so
// io_uring_setup fails in the kernel with EPERM.
package uringtest

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Environment is the variable a test sets for a child process (a
// re-executed test binary) that should run with io_uring denied.
const Environment = "TCPLAB_TEST_DENY_IO_URING"

// Classic BPF opcodes and seccomp return values (linux/filter.h,
// linux/seccomp.h).
const (
	bpfLdWAbs  = 0x20 // BPF_LD | BPF_W | BPF_ABS
	bpfJgeK    = 0x35 // BPF_JMP | BPF_JGE | BPF_K
	bpfJgtK    = 0x25 // BPF_JMP | BPF_JGT | BPF_K
	bpfRetK    = 0x06 // BPF_RET | BPF_K
	retAllow   = 0x7fff0000
	retErrno   = 0x00050000
	modeFilter = 1 // SECCOMP_SET_MODE_FILTER
	flagTSync  = 1 // SECCOMP_FILTER_FLAG_TSYNC
)

// DenyIOUring makes io_uring_setup, io_uring_enter and io_uring_register
// (425-427 on every architecture) fail with EPERM in every thread of this
// process and in its future children. It cannot be undone: call it only in
// a process started for the purpose.
func DenyIOUring() error {
	prog := []unix.SockFilter{
		{Code: bpfLdWAbs, K: 0}, // seccomp_data.nr
		{Code: bpfJgeK, Jt: 0, Jf: 2, K: unix.SYS_IO_URING_SETUP},
		{Code: bpfJgtK, Jt: 1, Jf: 0, K: unix.SYS_IO_URING_REGISTER},
		{Code: bpfRetK, K: retErrno | uint32(unix.EPERM)},
		{Code: bpfRetK, K: retAllow},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl NO_NEW_PRIVS: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, modeFilter, flagTSync, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}
