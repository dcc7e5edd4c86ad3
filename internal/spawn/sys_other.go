//go:build unix && !linux

package spawn

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr {
	// No parent-death signal here: a worker relies on EOF on its connection.
	return &syscall.SysProcAttr{Setpgid: true}
}

func self() (string, error) { return os.Executable() }

func socketpair() (parent, child *os.File, err error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return os.NewFile(uintptr(fds[0]), "mp-worker"), os.NewFile(uintptr(fds[1]), "mp-parent"), nil
}

func killGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if err == syscall.ESRCH {
		return os.ErrProcessDone
	}
	return err
}

func supported() error { return nil }

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

func setCommandName(name string) {}

// ParentDeathSignal is nil here: a worker sees its parent die only as EOF.
var ParentDeathSignal os.Signal

// growPipe does nothing here.
func growPipe(w *os.File, size int) {}

// setNonblock makes fd non-blocking, so that an *os.File of it waits for
// it in the runtime's poller, not in a thread blocked in the kernel.
func setNonblock(fd int) error { return syscall.SetNonblock(fd, true) }
