package spawn

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func sysProcAttr() *syscall.SysProcAttr {
	// Pdeathsig is a backstop only: a worker's first line of defence is EOF
	// on its connection, which it sees however its parent died. It is
	// SIGTERM, not SIGKILL, so that the worker can kill its own descendants
	// before it dies (see ParentDeathSignal).
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: ParentDeathSignal}
}

func self() (string, error) { return "/proc/self/exe", nil }

func socketpair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "mp-worker"), os.NewFile(uintptr(fds[1]), "mp-parent"), nil
}

func killGroup(pid int) error {
	err := unix.Kill(-pid, unix.SIGKILL)
	if err == unix.ESRCH {
		return os.ErrProcessDone
	}
	return err
}

func supported() error { return nil }

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

// setCommandName sets the command name that ps -o comm and top show.
// Writing /proc/self/comm names the main thread, which names the process.
func setCommandName(name string) { os.WriteFile("/proc/self/comm", []byte(name), 0) }
