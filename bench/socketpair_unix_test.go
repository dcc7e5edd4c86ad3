//go:build unix

package bench_test

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketPair returns the two ends of a new Unix stream socket pair, both
// close-on-exec (set under ForkLock: SOCK_CLOEXEC is not on every system).
func socketPair() (ours, theirs *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs"), nil
}
