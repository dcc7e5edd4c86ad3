package spawn

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func sysProcAttr() *syscall.SysProcAttr {
	// Pdeathsig is a backstop only: a worker's first line of defence is EOF
	// on its connection, which it sees however its parent died. It is
	// a signal of its own, not SIGKILL, so that the worker can kill its own
	// descendants before it dies (see ParentDeathSignal).
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: parentDeathSignal}
}

// parentDeathSignal is a real-time signal that nothing else sends a
// worker: SIGRTMIN+6 (the C library keeps the first two for itself).
const parentDeathSignal = syscall.Signal(40)

// ParentDeathSignal is the signal a worker gets when its parent dies. A
// worker handles it by killing its descendants, then its process group and
// itself. It is nil where there is no parent-death signal.
var ParentDeathSignal os.Signal = parentDeathSignal

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
func setCommandName(name string) {
	// Raw calls, not os.WriteFile: an *os.File would try the poller first,
	// on a file it cannot poll, for a worker that is still starting.
	fd, err := unix.Open("/proc/self/comm", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Write(fd, []byte(name))
	unix.Close(fd)
}

// growPipe makes the pipe of w hold size bytes, if the system lets it.
func growPipe(w *os.File, size int) {
	if rc, err := w.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size) })
	}
}

// setNonblock makes fd non-blocking, so that an *os.File of it waits for
// it in the runtime's poller, not in a thread blocked in the kernel.
func setNonblock(fd int) error { return syscall.SetNonblock(fd, true) }
