// Package spawn starts worker processes by re-executing the running binary,
// and lets a worker find the connection its parent gave it.
//
// A worker gets one end of a Unix socketpair as file descriptor 3, on
// which its parent writes to it, the write end of a pipe as file
// descriptor 4, on which it answers, and an environment marker naming
// them; its stdin is /dev/null, and its stdout and
// stderr are the parent's (stderr through a pipe, so the parent can keep its
// tail for error reports). Each worker leads its own process group, so a
// terminal's Ctrl-C reaches the parent only, and killing the group takes the
// worker's own children with it.
package spawn

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EnvMarker is the environment variable that makes a process a worker.
// Its value is "v2,<socket fd>,<pipe fd>,<parent pid>".
const EnvMarker = "MP_WORKER_FD"

const childFD = 3 // ExtraFiles[0]

// pipeSize is what the pipe from a worker to its parent holds, if the
// system lets it: a chunk's results are often hundreds of KiB, and a
// pipe holds 64 KiB by default (Map of a million ints: 26 to 29 ms with
// that, 22 to 23 ms with this or 1 MiB, 3 rounds interleaved). Not more: Linux counts the
// pipes of a user against a limit (fs.pipe-user-pages-soft, 64 MiB by
// default), past which every new pipe of that user is cut to a few KiB.
const pipeSize = 256 << 10

// parentPID is, in a worker, the pid of the parent that started it (set
// by Self, before the worker serves): when the worker's parent is not it
// any more, the parent is gone.
var parentPID int

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
	Name      string // the worker's name, shown in ps after argv[0]
	Spare     bool   // started ahead of need: it may warm up while it waits
	// MaxProcs, if positive, is the worker's GOMAXPROCS from its first
	// instruction: set later, from its hello, the change would stop its
	// world and free the caches of the processors it drops, a tenth of a
	// fresh worker's start. Self takes it back out of the environment.
	MaxProcs int
}

// EnvSpare marks a worker started as a spare (Config.Spare).
const EnvSpare = "MP_WORKER_SPARE"

// IsSpare is set by Self in a worker started as a spare.
var IsSpare bool

// Out is set by Self in a worker: the write end of the pipe that carries
// what the worker sends its parent.
var Out *os.File

// EnvMaxProcs marks a GOMAXPROCS that Start set (Config.MaxProcs) and
// holds what the worker's environment had before: "-" for nothing, else
// "=" and the value. Self puts that back, so that what the worker runs
// inherits its parent's environment, not the worker's setting.
const EnvMaxProcs = "MP_WORKER_GOMAXPROCS"

// workerMark is what a worker's argv[0] and command name end with, so that
// ps and top tell workers from their parent.
const workerMark = "[mp]"

// Child is a started worker process.
type Child struct {
	Cmd  *exec.Cmd
	Conn *net.UnixConn // the parent's end of the socketpair
	Out  *os.File      // the read end of the pipe the worker writes to (see Self)

	tail     *tailBuffer
	flush    []*lineWriter // nil entries for streams written directly
	waitStop time.Duration // how long reap waits for output to flush
	done     chan struct{}

	mu     sync.Mutex
	exited bool // the process has exited: its pid may be reaped, and reused
}

// Start starts a worker. The caller owns the returned Child: it must close
// Conn and Out, and the process is reaped by a goroutine Start leaves behind, which
// closes Done when the process has exited and its stderr has drained.
func Start(cfg Config) (*Child, error) {
	if _, ok := os.LookupEnv(EnvMarker); ok {
		return nil, ErrRecursive
	}
	if err := supported(); err != nil {
		return nil, err
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
	outR, outW, err := os.Pipe()
	if err != nil {
		parentEnd.Close()
		return nil, err
	}
	defer outW.Close()
	growPipe(outW, pipeSize)

	c := &Child{tail: newTailBuffer(8 << 10), done: make(chan struct{})}
	cmd := exec.Command(path)
	// ps shows "prog [mp PoolWorker-1]"; the worker sets its command name
	// (what top shows) to "prog[mp]" when it starts, in Self.
	name := cfg.Name
	if name == "" {
		name = "worker"
	}
	cmd.Args = []string{os.Args[0] + " [mp " + name + "]"}
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=v2,%d,%d,%d", EnvMarker, childFD, childFD+1, os.Getpid()))
	if cfg.Spare {
		cmd.Env = append(cmd.Env, EnvSpare+"=1")
	}
	if cfg.MaxProcs > 0 {
		was := "-"
		if v, ok := lookupOK(cmd.Env, "GOMAXPROCS"); ok {
			was = "=" + v
		}
		cmd.Env = append(cmd.Env, EnvMaxProcs+"="+was, "GOMAXPROCS="+strconv.Itoa(cfg.MaxProcs))
	}
	cmd.Env = append(cmd.Env, workerEnv(cmd.Env)...)
	cmd.Dir = cfg.Dir
	cmd.ExtraFiles = []*os.File{childEnd, outW}
	stdout, stderr := cfg.Stdout, cfg.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	var lw *lineWriter
	cmd.Stdout, lw = newOutput(stdout, false)
	c.flush = append(c.flush, lw)
	stderr, lw = newOutput(stderr, true) // through a pipe anyway, for the tail
	c.flush = append(c.flush, lw)
	cmd.Stderr = io.MultiWriter(stderr, c.tail)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = cfg.WaitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	c.waitStop = cmd.WaitDelay
	c.Cmd = cmd

	if err := startOnStarterThread(cmd); err != nil {
		parentEnd.Close()
		outR.Close()
		c.release()
		return nil, fmt.Errorf("mp: starting worker %s: %w", path, err)
	}
	conn, err := net.FileConn(parentEnd)
	parentEnd.Close()
	if err != nil {
		outR.Close()
		c.KillGroup()
		cmd.Wait()
		return nil, fmt.Errorf("mp: worker connection: %w", err)
	}
	c.Conn = conn.(*net.UnixConn)
	c.Out = outR
	adopt(c.PID())
	go c.reap()
	return c, nil
}

// release lets go of the locks of the writers of the worker's output.
func (c *Child) release() {
	for _, lw := range c.flush {
		if lw != nil {
			lw.release()
		}
	}
}

func (c *Child) reap() {
	// Once the worker has exited, and before it is reaped (so that its pid,
	// which names its process group, cannot be reused), kill what is left
	// of its group: what a task started must not outlive its worker, however
	// the worker ended.
	if awaitExit(c.PID()) {
		c.mu.Lock()
		c.exited = true // from now on KillGroup must not signal this pid
		killGroup(c.PID())
		c.mu.Unlock()
	}
	c.Cmd.Wait() // its error is in State; Output has the stderr
	c.mu.Lock()
	c.exited = true
	c.mu.Unlock()
	disown(c.PID())
	// What is left of a last line goes out; a user's writer that blocks
	// holds up the end of its workers for WaitDelay at most.
	flushed := make(chan struct{})
	go func() {
		for _, lw := range c.flush {
			if lw != nil {
				lw.Flush()
			}
		}
		c.release()
		close(flushed)
	}()
	select {
	case <-flushed:
	case <-time.After(c.waitStop):
	}
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

// KillGroup sends SIGKILL to the worker, to its process group (what it
// started that stayed in the group), and on Linux to every other
// descendant it has (what left the group but whose parent still lives).
func (c *Child) KillGroup() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited {
		return os.ErrProcessDone
	}
	return killTree(c.Cmd.Process.Pid)
}

// Self returns the connection to the parent if this process was started as
// a worker, sets Out to the pipe to write to the parent, and removes the
// marker from the environment so that programs the worker starts are not
// mistaken for workers. It returns (nil, nil) in a process that is not a
// worker. The parent writes on the connection, and the worker on Out.
func Self() (*net.UnixConn, error) {
	v, ok := os.LookupEnv(EnvMarker)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvMarker)
	_, IsSpare = os.LookupEnv(EnvSpare)
	os.Unsetenv(EnvSpare)
	if was, ok := os.LookupEnv(EnvMaxProcs); ok {
		os.Unsetenv(EnvMaxProcs)
		if v, ok := strings.CutPrefix(was, "="); ok {
			os.Setenv("GOMAXPROCS", v)
		} else {
			os.Unsetenv("GOMAXPROCS")
		}
	}
	setCommandName(commandName(os.Args[0]))
	parts := strings.Split(v, ",")
	if len(parts) != 4 || parts[0] != "v2" {
		return nil, fmt.Errorf("mp: %s=%q was set by another version of mp: parent and worker must run the same build", EnvMarker, v)
	}
	fd, err1 := strconv.Atoi(parts[1])
	outFD, err3 := strconv.Atoi(parts[2])
	ppid, err2 := strconv.Atoi(parts[3])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, fmt.Errorf("mp: malformed %s=%q", EnvMarker, v)
	}
	if os.Getppid() != ppid {
		return nil, fmt.Errorf("mp: worker's parent %d is gone", ppid)
	}
	parentPID = ppid
	f := os.NewFile(uintptr(fd), "mp-parent")
	if f == nil {
		return nil, fmt.Errorf("mp: worker has no connection on fd %d", fd)
	}
	closeOnExec(fd)
	closeOnExec(outFD)
	// The parent's start made it blocking: rawio's raw writes must not
	// block the thread.
	if err := setNonblock(outFD); err != nil {
		return nil, fmt.Errorf("mp: worker's pipe to its parent on fd %d: %w", outFD, err)
	}
	if Out = os.NewFile(uintptr(outFD), "mp-parent-out"); Out == nil {
		return nil, fmt.Errorf("mp: worker has no pipe to its parent on fd %d", outFD)
	}
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

// startOnStarterThread starts cmd from one of the starter threads, which
// never exit.
//
// Do not start workers from arbitrary goroutines: the kernel sends a child
// its parent-death signal when the *thread* that created it exits, not the
// process (go.dev/issue/27505), and Go may retire the thread a goroutine ran
// on. Starting every worker from a thread that is locked and never released
// makes the parent-death signal mean what it says. There are two, so that
// the workers of a pool start side by side (PoolStart 4.8 -> 4.2 ms).
func startOnStarterThread(cmd *exec.Cmd) error {
	starterOnce()
	errc := make(chan error, 1)
	starter <- func() { errc <- cmd.Start() }
	return <-errc
}

var starter = make(chan func())

// starters is how many threads start workers: a start blocks its thread
// until the child has called exec, and a pool's workers start at once.
const starters = 2

var starterOnce = sync.OnceFunc(func() {
	for range starters {
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for f := range starter {
				f()
			}
		}()
	}
})

// commandName is a worker's command name: its binary's name, cut to leave
// room for the worker mark within the kernel's 15 bytes.
func commandName(argv0 string) string {
	base, _, _ := strings.Cut(argv0, " [mp ")
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	const max = 15 - len(workerMark)
	if len(base) > max {
		base = base[:max]
	}
	return base + workerMark
}

// workerEnv returns what a worker's environment env needs added, so that
// what the tools see in a worker reaches the user.
func workerEnv(env []string) []string {
	var add []string
	if raceEnabled {
		// A race in a task must fail it (halt_on_error: the worker exits
		// with the report on its stderr, which the task's ExitError
		// quotes), not go unseen in a worker that is later killed. And a
		// race-enabled program sleeps a second at exit by default, so that
		// its other threads can report races; a worker has no such threads,
		// and that second would be added to every worker's end.
		gorace := lookup(env, "GORACE")
		if !strings.Contains(gorace, "halt_on_error") {
			gorace += " halt_on_error=1"
		}
		if !strings.Contains(gorace, "atexit_sleep_ms") {
			gorace += " atexit_sleep_ms=0"
		}
		add = append(add, "GORACE="+strings.TrimSpace(gorace))
	}
	// Under go test -cover, the test binary collects coverage data in the
	// directory of -test.gocoverdir; a worker that writes its own there, as
	// it exits, has what ran in it counted too.
	if f := flag.Lookup("test.gocoverdir"); f != nil && f.Value.String() != "" && lookup(env, "GOCOVERDIR") == "" {
		add = append(add, "GOCOVERDIR="+f.Value.String())
	}
	return add
}

// lookup returns the value of key in env, the last one if it is set twice.
func lookup(env []string, key string) string {
	v, _ := lookupOK(env, key)
	return v
}

// lookupOK returns the value env gives key, the last one if several, and
// whether it gives one.
func lookupOK(env []string, key string) (v string, ok bool) {
	for _, kv := range env {
		if k, val, found := strings.Cut(kv, "="); found && k == key {
			v, ok = val, true
		}
	}
	return v, ok
}
