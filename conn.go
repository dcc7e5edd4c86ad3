package mp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/go-mp/mp/internal/rawio"
	"github.com/go-mp/mp/internal/spawn"
	"github.com/go-mp/mp/internal/wire"
)

// WorkerOptions says how worker processes are started. The zero value
// starts workers of this very binary, in this process's directory and
// environment, writing to this process's stdout and stderr.
type WorkerOptions struct {
	// Env is added to this process's environment for the worker.
	Env []string
	// Dir is the worker's working directory; empty means this process's.
	Dir string
	// Stdout and Stderr receive the worker's output; nil means this
	// process's own. A writer may be shared by every worker, by both
	// streams and by other pools (a bytes.Buffer, a logger): mp writes to
	// it from one goroutine at a time, in whole lines, so lines of different
	// workers never mix (a line without a newline is passed on at 64 KiB, or
	// when its worker exits). A writer that blocks holds up only the
	// workers that write to it. An *os.File for Stdout is written by the
	// workers directly; stderr always passes through mp, which keeps its
	// first and last 8 KiB for the ExitError of a worker that dies.
	Stdout, Stderr io.Writer
	// GOMAXPROCS sets the worker's runtime.GOMAXPROCS, from its start in a
	// pool's worker, from its handshake in a spare of Spawn (KeepSpare); the
	// environment of what it runs is not changed. Zero means the default:
	// 1 in a pool's workers, as a pool already runs one worker per CPU and a
	// worker with one thread hands a task over several times faster; Go's
	// own default (GOMAXPROCS from the environment if set, else the CPUs the
	// worker may use) in a process started by Spawn, or in a pool's worker
	// whose Env sets GOMAXPROCS. A task that spreads its own work over
	// goroutines wants more: set it, or -1 for Go's default.
	GOMAXPROCS int
	// StartTimeout bounds a worker's start-up, from exec to handshake, and
	// then a pool's Init in it. Zero means 10s.
	StartTimeout time.Duration
	// WaitDelay bounds the wait for a worker's stderr to close after it
	// exits (a grandchild may hold it open). Zero means 2s.
	WaitDelay time.Duration
	// MaxMessageSize limits each message between parent and worker: one
	// task's arguments, or one task's results. Zero means 64 MiB; the most
	// is 2 GiB.
	MaxMessageSize int
	// KeepSpare makes Spawn keep one worker process started ahead of time,
	// idle, for the next Spawn that sets it too: that Spawn then takes the
	// spare, and skips the wait for a process to start, mostly the dynamic
	// loader and Go's runtime (see BenchmarkSpawnWarm in bench/, and the
	// README's table). While it waits, the spare runs a task's path once
	// (mp.warm-up), so that the first real one does not pay for it.
	// Process.Wait waits for the exit too, which takes the kernel a few
	// milliseconds more. Each Spawn that takes the spare starts the next
	// one in the background. The spare costs one idle process, about 5 MiB
	// of memory; it exits with the program (however the program ends), and
	// is started only for options whose Env, Dir, Stdout, Stderr and
	// WaitDelay are zero: with others, KeepSpare does nothing. A spare is
	// started with this process's environment and working directory as
	// they are then: a Spawn after os.Setenv or os.Chdir may take a spare
	// that has the old ones. Pools do not use it.
	KeepSpare bool
}

// maxMessage is the message size limit in force: MaxMessageSize, or its
// default, within what the wire format can carry.
func (o WorkerOptions) maxMessage() int {
	if o.MaxMessageSize <= 0 {
		return wire.DefaultMaxFrame
	}
	return min(o.MaxMessageSize, wire.MaxFrameLimit)
}

func (o WorkerOptions) startTimeout() time.Duration {
	if o.StartTimeout > 0 {
		return o.StartTimeout
	}
	return 10 * time.Second
}

// workerConn is a started worker and the framing on its connection.
type workerConn struct {
	child *spawn.Child
	raw   *rawio.Conn // under r: the pipe the worker writes to
	r     *wire.Reader
	w     *wire.Writer
	hello wire.Hello // ours, as sent
	// sentHandles are the IDs of the handles whose descriptors the worker
	// has (see handle.sendHandles); guarded as writes to w are.
	sentHandles map[uint64]bool

	// A pool's worker is read by its slot's reader, or by an Apply's
	// caller waiting for its own result (see slot.read and readFor):
	// whoever holds readMu reads r.
	readMu   sync.Mutex
	readEnd  bool          // r ended, and dead has why; guarded by readMu
	readWake chan struct{} // wakes a reader that waits while the worker is idle
	dead     chan error    // why r ended, once
}

// startWorker starts a worker process and sends it our hello. The caller
// must call handshake before it reads anything else, and close when done.
func startWorker(o WorkerOptions, hello wire.Hello) (*workerConn, error) {
	wc, err := startProcess(o, hello, false)
	if err != nil {
		return nil, err
	}
	// The worker sends its own hello first and only then reads, so this
	// write cannot wait on it. If it fails, the worker is already dead, and
	// handshake reports how it died.
	_ = wc.w.Write(wire.KindHello, 0, wc.setHello(o, hello))
	return wc, nil
}

// startProcess starts a worker process and sends it nothing yet: it waits
// for our hello (see setHello) after it sent its own.
func startProcess(o WorkerOptions, hello wire.Hello, spare bool) (*workerConn, error) {
	cfg := spawn.Config{
		Env: o.Env, Dir: o.Dir, Stdout: o.Stdout, Stderr: o.Stderr, WaitDelay: o.WaitDelay,
		Name: hello.Name, Spare: spare,
	}
	if !spare {
		// A spare's GOMAXPROCS is set when it is taken (setHello): the
		// Spawn that takes it may want another.
		cfg.MaxProcs = o.GOMAXPROCS
	}
	child, err := spawn.Start(cfg)
	if err != nil {
		return nil, &prefixedError{prefix: "mp: workers fail to start: ", err: err, sentinel: ErrWorkerStart}
	}
	// Tasks go on the socket (Conn, for descriptors too); what the worker
	// sends comes on a pipe (Out): a pipe takes a small write for about
	// half the kernel's time a socket does, and a worker writes each
	// result on its own.
	raw := rawio.New(child.Conn)
	out := rawio.NewFile(child.Out)
	// The parent's reads of a worker wait at once, rather than poll first
	// (see rawio.SpinFor), but for an Apply caller's read of its own result
	// (readFor): a pool's readers read while tasks stream in, and polling
	// there would take CPU that its workers need.
	out.SetPolling(false)
	return &workerConn{
		child: child,
		raw:   out,
		r:     wire.NewReader(out, o.maxMessage()),
		w:     wire.NewWriter(raw, o.maxMessage()),
		hello: hello,
	}, nil
}

// setHello completes our hello with what o says, and returns it encoded,
// to be sent.
func (wc *workerConn) setHello(o WorkerOptions, hello wire.Hello) []byte {
	hello.MaxFrame = o.maxMessage()
	hello.MaxProcs = o.GOMAXPROCS
	wc.hello = hello
	wc.r.SetMax(hello.MaxFrame)
	wc.w.SetMax(hello.MaxFrame)
	return wire.MarshalHello(hello)
}

// handshake reads the worker's hello and checks it against ours. Any
// failure kills the worker, waits for it, and explains what to do.
func (wc *workerConn) handshake(timeout time.Duration) error {
	wc.child.Out.SetReadDeadline(time.Now().Add(timeout))
	f, err := wc.r.Read()
	wc.child.Out.SetReadDeadline(time.Time{})
	if err == nil && f.Kind != wire.KindHello {
		err = fmt.Errorf("%w: expected a hello, got a %v frame", wire.ErrMalformed, f.Kind)
	}
	if err == nil {
		_, err = wire.ParseHello(f.Payload, wc.hello)
	}
	if err == nil {
		return nil
	}
	pid := wc.child.PID()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		wc.kill()
		return fmt.Errorf("%w: worker %d did not answer within %v: does main call mp.Main() as its first statement (and TestMain, in tests)?", ErrWorkerStart, pid, timeout)
	case peerGone(err):
		wc.close()
		exit := wc.exitError(killReason{})
		if exit.State != nil && exit.State.Success() {
			return fmt.Errorf("%w: worker %d exited without a handshake: main does not call mp.Main() as its first statement (and TestMain, in tests): %w", ErrWorkerStart, pid, exit)
		}
		return fmt.Errorf("%w: worker %d died during its handshake: %w", ErrWorkerStart, pid, exit)
	}
	wc.kill()
	return &prefixedError{prefix: "mp: workers fail to start: ", err: err, sentinel: ErrWorkerStart}
}

// kill kills the worker's process group, waits for it and closes the connection.
func (wc *workerConn) kill() {
	wc.child.KillGroup()
	<-wc.child.Done()
	wc.close()
}

// close closes the connection both ways: a read of the worker in
// progress, or to come, fails with net.ErrClosed.
func (wc *workerConn) close() {
	wc.raw.Close()
	wc.child.Conn.Close()
}

// exitError waits for the worker, which is dead or dying, and describes its end.
func (wc *workerConn) exitError(kill killReason) *ExitError {
	select {
	case <-wc.child.Done():
	case <-time.After(5 * time.Second):
		// Its connection closed but it has not exited: make sure it does.
		wc.child.KillGroup()
		<-wc.child.Done()
	}
	return &ExitError{PID: wc.child.PID(), State: wc.child.State(), Output: wc.child.Output(), Reason: kill.String(), kill: kill}
}

// peerGone reports whether err means the other end of a connection closed:
// a worker closing with our frames unread resets the connection rather than
// ending it cleanly.
func peerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
