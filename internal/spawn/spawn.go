// Package spawn starts worker processes by re-executing the running binary,
// and lets a worker find the connection its parent gave it.
//
// A worker gets one end of a Unix socketpair as file descriptor 3 and an
// environment marker naming it; its stdin is /dev/null, and its stdout and
// stderr are the parent's (stderr through a pipe, so the parent can keep its
// tail for error reports). Each worker leads its own process group, so a
// terminal's Ctrl-C reaches the parent only, and killing the group takes the
// worker's own children with it.
package spawn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvMarker is the environment variable that makes a process a worker.
// Its value is "v1,<fd>,<parent pid>".
const EnvMarker = "MP_WORKER_FD"

const childFD = 3 // ExtraFiles[0]

// ErrRecursive is returned by [Start] in a process that was started as a
// worker but never became one: its main did not call mp.Main, so it ran as a
// parent and tried to start workers of its own. Refusing here is what stops
// a fork bomb.
var ErrRecursive = errors.New("mp: this process was started as an mp worker but did not call mp.Main: " +
	"call mp.Main() as the first statement of main (and of TestMain in tests)")

// Config says how to start a worker.
type Config struct {
	Path      string    // the binary; empty means this process's own
	Env       []string  // added to this process's environment
	Dir       string    // working directory; empty means this process's
	Stdout    io.Writer // nil means os.Stdout
	Stderr    io.Writer // nil means os.Stderr
	WaitDelay time.Duration
}

// Child is a started worker process.
type Child struct {
	Cmd  *exec.Cmd
	Conn *net.UnixConn // the parent's end of the socketpair

	tail *tailBuffer
	done chan struct{}
}

// Start starts a worker. The caller owns the returned Child: it must close
// Conn, and the process is reaped by a goroutine Start leaves behind, which
// closes Done when the process has exited and its stderr has drained.
func Start(cfg Config) (*Child, error) {
	if _, ok := os.LookupEnv(EnvMarker); ok {
		return nil, ErrRecursive
	}
	path := cfg.Path
	if path == "" {
		var err error
		if path, err = self(); err != nil {
			return nil, err
		}
	}
	parentEnd, childEnd, err := socketpair()
	if err != nil {
		return nil, err
	}
	defer childEnd.Close()

	c := &Child{tail: newTailBuffer(8 << 10), done: make(chan struct{})}
	cmd := exec.Command(path)
	cmd.Args = []string{os.Args[0]}
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=v1,%d,%d", EnvMarker, childFD, os.Getpid()))
	if raceEnabled {
		// A race-enabled program sleeps a second at exit by default, so
		// that its other threads can report races; a worker has no such
		// threads, and that second would be added to every worker's end.
		cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	cmd.Dir = cfg.Dir
	cmd.ExtraFiles = []*os.File{childEnd}
	cmd.Stdout = cfg.Stdout
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	cmd.Stderr = io.MultiWriter(stderr, c.tail)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = cfg.WaitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	c.Cmd = cmd

	if err := startOnStarterThread(cmd); err != nil {
		parentEnd.Close()
		return nil, fmt.Errorf("mp: starting worker %s: %w", path, err)
	}
	conn, err := net.FileConn(parentEnd)
	parentEnd.Close()
	if err != nil {
		c.KillGroup()
		cmd.Wait()
		return nil, fmt.Errorf("mp: worker connection: %w", err)
	}
	c.Conn = conn.(*net.UnixConn)
	go c.reap()
	return c, nil
}

func (c *Child) reap() {
	c.Cmd.Wait() // its error is in State; Output has the stderr
	close(c.done)
}

// PID returns the worker's process ID.
func (c *Child) PID() int { return c.Cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// State returns the exit state. It is valid once Done is closed.
func (c *Child) State() *os.ProcessState { return c.Cmd.ProcessState }

// Output returns the first and last bytes the worker wrote to stderr.
func (c *Child) Output() []byte { return c.tail.Bytes() }

// Signal sends sig to the worker process alone.
func (c *Child) Signal(sig os.Signal) error {
	err := c.Cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return os.ErrProcessDone
	}
	return err
}

// KillGroup sends SIGKILL to the worker's process group: the worker and any
// process it started that stayed in its group.
func (c *Child) KillGroup() error {
	select {
	case <-c.done:
		return os.ErrProcessDone
	default:
	}
	return killGroup(c.Cmd.Process.Pid)
}

// Self returns the connection to the parent if this process was started as
// a worker, and removes the marker from the environment so that programs the
// worker starts are not mistaken for workers. It returns (nil, nil) in a
// process that is not a worker.
func Self() (*net.UnixConn, error) {
	v, ok := os.LookupEnv(EnvMarker)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvMarker)
	parts := strings.Split(v, ",")
	if len(parts) != 3 || parts[0] != "v1" {
		return nil, fmt.Errorf("mp: %s=%q was set by another version of mp: parent and worker must run the same build", EnvMarker, v)
	}
	fd, err1 := strconv.Atoi(parts[1])
	ppid, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("mp: malformed %s=%q", EnvMarker, v)
	}
	if os.Getppid() != ppid {
		return nil, fmt.Errorf("mp: worker's parent %d is gone", ppid)
	}
	f := os.NewFile(uintptr(fd), "mp-parent")
	if f == nil {
		return nil, fmt.Errorf("mp: worker has no connection on fd %d", fd)
	}
	syscall.CloseOnExec(fd)
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("mp: worker connection on fd %d: %w", fd, err)
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("mp: worker fd %d is not a Unix socket", fd)
	}
	return uc, nil
}

// startOnStarterThread starts cmd from one OS thread that never exits.
//
// Do not start workers from arbitrary goroutines: the kernel sends a child
// its parent-death signal when the *thread* that created it exits, not the
// process (go.dev/issue/27505), and Go may retire the thread a goroutine ran
// on. Starting every worker from a thread that is locked and never released
// makes the parent-death signal mean what it says.
func startOnStarterThread(cmd *exec.Cmd) error {
	starterOnce()
	errc := make(chan error, 1)
	starter <- func() { errc <- cmd.Start() }
	return <-errc
}

var starter = make(chan func())

var starterOnce = sync.OnceFunc(func() {
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the process
		for f := range starter {
			f()
		}
	}()
})
