//go:build unix

package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/wire"
	"github.com/go-mp/mp/internal/worker"
)

// childEnv makes the test binary, re-executed, run worker.Serve on the
// socket it gets as file descriptor 3, as mp.Main does in a worker.
const childEnv = "MP_WORKER_TEST_CHILD"

const fingerprint = "worker-test-fingerprint"

var errNotRegistered = errors.New("test: function not registered")

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(serveChild())
	}
	os.Exit(m.Run())
}

func serveChild() int {
	f := os.NewFile(3, "parent")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker test child:", err)
		return 100
	}
	return worker.Serve(conn, worker.Config{
		Fingerprint:   fingerprint,
		Lookup:        func(name string) (worker.Handler, bool) { h, ok := handlers[name]; return h, ok },
		NotRegistered: errNotRegistered,
	})
}

// single makes a Handler of a function of one []byte argument.
func single(fn func(ctx context.Context, arg []byte) ([]byte, error)) worker.Handler {
	return func(ctx context.Context, args []byte, n int, each func(func(context.Context, int) error)) ([]byte, error) {
		if n != 1 {
			return nil, fmt.Errorf("test handler: got %d items, want 1", n)
		}
		var out []byte
		each(func(ctx context.Context, _ int) error {
			r, err := fn(ctx, args)
			out = r
			return err
		})
		return out, nil
	}
}

// The functions the child knows. Arguments and results are raw bytes.
var handlers = map[string]worker.Handler{
	"echo": single(func(ctx context.Context, arg []byte) ([]byte, error) { return arg, nil }),
	"pid": single(func(ctx context.Context, arg []byte) ([]byte, error) {
		return fmt.Appendf(nil, "%d", os.Getpid()), nil
	}),
	"panic": single(func(ctx context.Context, arg []byte) ([]byte, error) { panic("boom: " + string(arg)) }),
	// block runs until its context ends. It first creates the file named
	// by its argument, if any, to say it runs.
	"block": single(func(ctx context.Context, arg []byte) ([]byte, error) {
		if len(arg) > 0 {
			if err := os.WriteFile(string(arg), nil, 0o600); err != nil {
				return nil, err
			}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}),
	// slowChunk runs the n items of a chunk for 150ms each, long enough for
	// a worker to report on the chunk while it runs; an item whose index is
	// in args (as a byte) panics.
	"slowChunk": func(ctx context.Context, args []byte, n int, each func(func(context.Context, int) error)) ([]byte, error) {
		each(func(ctx context.Context, i int) error {
			time.Sleep(150 * time.Millisecond)
			if bytes.IndexByte(args, byte(i)) >= 0 {
				panic(fmt.Sprintf("item %d", i))
			}
			return nil
		})
		return fmt.Appendf(nil, "%d items", n), nil
	},
}

// child is a worker process running Serve, and the test's end of its
// connection.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	conn   net.Conn
	r      *wire.Reader
	w      *wire.Writer
	stderr *lockedBuffer

	waitOnce sync.Once
	code     int
	waitErr  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// timeout bounds every wait of these tests: a read of a frame, the exit of
// a child.
const timeout = 30 * time.Second

// startChild starts a worker and reads its hello.
func startChild(t *testing.T) *child {
	t.Helper()
	// Close-on-exec, set under ForkLock, keeps the workers of parallel
	// tests from inheriting each other's sockets (SOCK_CLOEXEC is not on
	// every system).
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "test"), os.NewFile(uintptr(fds[1]), "worker")
	defer theirs.Close() // the worker has its own copy
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatalf("FileConn: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	c := &child{t: t, conn: conn, stderr: &lockedBuffer{}}
	c.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	// A race-enabled binary sleeps a second at exit by default.
	c.cmd.Env = append(os.Environ(), childEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	c.cmd.ExtraFiles = []*os.File{theirs}
	c.cmd.Stderr = c.stderr
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		cancel()
		conn.Close()
		t.Fatalf("starting the worker: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		c.cmd.Process.Kill()
		c.wait()
		cancel()
		if t.Failed() {
			t.Logf("worker stderr:\n%s", c.stderr.String())
		}
	})
	c.r = wire.NewReader(conn, 0)
	c.w = wire.NewWriter(conn, 0)

	f := c.next(wire.KindHello)
	h, err := wire.ParseHello(f.Payload, wire.NewHello(fingerprint))
	if err != nil {
		t.Fatalf("the worker's hello: %v", err)
	}
	if h.PID != c.cmd.Process.Pid {
		t.Errorf("the worker's hello: got pid %d, want %d", h.PID, c.cmd.Process.Pid)
	}
	return c
}

// handshake sends the parent's hello.
func (c *child) handshake() {
	c.t.Helper()
	h := wire.NewHello(fingerprint)
	h.Name = "Process-1"
	c.send(wire.KindHello, 0, wire.MarshalHello(h))
}

func (c *child) send(kind wire.Kind, id uint64, parts ...[]byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	if err := c.w.Write(kind, id, parts...); err != nil {
		c.t.Fatalf("sending a %v frame: %v", kind, err)
	}
}

// task sends task id, a call of fn with arg.
func (c *child) task(id uint64, fn string, arg []byte) {
	c.t.Helper()
	c.chunk(id, fn, 1, arg)
}

// chunk sends task id, n calls of fn with args.
func (c *child) chunk(id uint64, fn string, n int, args []byte) {
	c.t.Helper()
	body := wire.Task{Func: fn, N: n, Deadline: time.Now().Add(timeout)}
	c.send(wire.KindTask, id, wire.AppendTaskHeader(nil, body), args)
}

// known are the frame kinds a worker sends that these tests look at. A
// worker may send others (progress reports, say): next skips them.
var known = []wire.Kind{wire.KindHello, wire.KindResult, wire.KindRevoked, wire.KindOverrun}

// next reads frames until one of a known kind, which must be of kind want.
func (c *child) next(want wire.Kind) wire.Frame {
	c.t.Helper()
	for {
		c.conn.SetReadDeadline(time.Now().Add(timeout))
		f, err := c.r.Read()
		if err != nil {
			c.t.Fatalf("reading a %v frame: %v", want, err)
		}
		if !slices.Contains(known, f.Kind) {
			c.t.Logf("skipping a %v frame of ID %d", f.Kind, f.ID)
			continue
		}
		if f.Kind != want {
			c.t.Fatalf("got a %v frame of ID %d, want a %v frame", f.Kind, f.ID, want)
		}
		return f
	}
}

// result reads the next result, which must be that of task id, of 1 item.
func (c *child) result(id uint64) wire.Result {
	c.t.Helper()
	return c.chunkResult(id, 1)
}

// chunkResult reads the next result, which must be that of task id, of n items.
func (c *child) chunkResult(id uint64, n int) wire.Result {
	c.t.Helper()
	f := c.next(wire.KindResult)
	if f.ID != id {
		c.t.Fatalf("got the result of task %d, want that of task %d", f.ID, id)
	}
	res, err := wire.ParseResult(f.Payload)
	if err != nil {
		c.t.Fatalf("result of task %d: %v", id, err)
	}
	if res.N != n {
		c.t.Errorf("result of task %d: got %d items, want %d", id, res.N, n)
	}
	return res
}

// value reads the result of task id, which must have succeeded.
func (c *child) value(id uint64) []byte {
	c.t.Helper()
	res := c.result(id)
	if len(res.Failures) != 0 {
		c.t.Fatalf("task %d: got failures %+v, want none", id, res.Failures)
	}
	return res.Values
}

// failure reads the result of task id, which must have failed with status.
func (c *child) failure(id uint64, status wire.Status) []byte {
	c.t.Helper()
	res := c.result(id)
	if len(res.Failures) != 1 || res.Failures[0].Index != 0 || res.Failures[0].Status != status {
		c.t.Fatalf("task %d: got failures %+v, want one of item 0 with status %d", id, res.Failures, status)
	}
	return res.Failures[0].Info
}

// block sends task id, a call of block, and waits until it runs.
func (c *child) block(id uint64) {
	c.t.Helper()
	running := filepath.Join(c.t.TempDir(), "running")
	c.task(id, "block", []byte(running))
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(running); err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("task %d has not started %v after it was sent", id, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wait waits, bounded, for the worker to exit and returns its exit code.
func (c *child) wait() (int, error) {
	c.waitOnce.Do(func() {
		c.waitErr = c.cmd.Wait()
		c.code = c.cmd.ProcessState.ExitCode()
	})
	return c.code, c.waitErr
}

// exits checks that the worker exits with code want.
func (c *child) exits(want int) {
	c.t.Helper()
	done := make(chan struct{})
	go func() { c.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		c.t.Fatalf("the worker has not exited %v after, want exit code %d", timeout, want)
	}
	if code, err := c.wait(); code != want {
		c.t.Errorf("exit code: got %d (%v), want %d", code, err, want)
	}
}

func TestHandshakeMismatch(t *testing.T) {
	t.Parallel()
	other := func(edit func(*wire.Hello)) []byte {
		h := wire.NewHello(fingerprint)
		edit(&h)
		return wire.MarshalHello(h)
	}
	tests := []struct {
		name    string
		kind    wire.Kind
		payload []byte
		stderr  string
	}{
		{name: "other fingerprint", kind: wire.KindHello, payload: other(func(h *wire.Hello) { h.Fingerprint = "another-build" }), stderr: "function registry"},
		{name: "other version", kind: wire.KindHello, payload: other(func(h *wire.Hello) { h.Version = wire.Version + 1 }), stderr: "protocol version"},
		{name: "other magic", kind: wire.KindHello, payload: other(func(h *wire.Hello) { h.Magic = "not-mp" }), stderr: "not an mp worker"},
		{name: "not CBOR", kind: wire.KindHello, payload: []byte{0xff, 0x00}, stderr: "handshake"},
		{name: "a task first", kind: wire.KindTask, payload: wire.AppendTaskHeader(nil, wire.Task{Func: "echo", N: 1}), stderr: "expected a hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := startChild(t)
			c.send(tt.kind, 0, tt.payload)
			c.exits(worker.ExitProtocol)
			if got := c.stderr.String(); !strings.Contains(got, tt.stderr) {
				t.Errorf("stderr: got %q, want it to contain %q", got, tt.stderr)
			}
		})
	}
}

func TestUnknownFunction(t *testing.T) {
	t.Parallel()
	c := startChild(t)
	c.handshake()
	c.task(1, "no.such", []byte("x"))
	var info wire.ErrorInfo
	if err := wire.UnmarshalAny(c.failure(1, wire.StatusError), &info); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info.Msg, errNotRegistered.Error()) || !strings.Contains(info.Msg, `"no.such"`) {
		t.Errorf("got message %q, want one wrapping %q and naming the function", info.Msg, errNotRegistered)
	}
	// The worker serves on.
	c.task(2, "echo", []byte("still here"))
	if got := c.value(2); string(got) != "still here" {
		t.Errorf("after the unknown function: got %q, want %q", got, "still here")
	}
}

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	c := startChild(t)
	c.handshake()
	c.task(1, "pid", nil)
	pid := string(c.value(1))
	if want := fmt.Sprint(c.cmd.Process.Pid); pid != want {
		t.Errorf("pid: got %s, want %s", pid, want)
	}
	for id := uint64(2); id < 5; id++ { // again and again: the worker keeps serving
		c.task(id, "panic", []byte("x"))
		var info wire.PanicInfo
		if err := wire.UnmarshalAny(c.failure(id, wire.StatusPanic), &info); err != nil {
			t.Fatal(err)
		}
		if info.Value != "boom: x" || !bytes.Contains(info.Stack, []byte("worker_test.go")) {
			t.Errorf("task %d: got panic %q with stack\n%s\nwant %q with a stack through worker_test.go", id, info.Value, info.Stack, "boom: x")
		}
	}
	c.task(5, "pid", nil)
	if got := string(c.value(5)); got != pid {
		t.Errorf("after the panics: got pid %s, want the same worker %s", got, pid)
	}
}

// TestChunk runs chunks of several items, long enough that the worker may
// send frames about them while they run (which next skips): a panic fails
// its item only.
func TestChunk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		n      int
		panics []byte // the items that panic
	}{
		{name: "all succeed", n: 3},
		{name: "one panics", n: 4, panics: []byte{1}},
		{name: "first and last panic", n: 3, panics: []byte{0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := startChild(t)
			c.handshake()
			c.chunk(1, "slowChunk", tt.n, tt.panics)
			res := c.chunkResult(1, tt.n)
			var failed []byte
			for _, f := range res.Failures {
				failed = append(failed, byte(f.Index))
				var info wire.PanicInfo
				if f.Status != wire.StatusPanic || wire.UnmarshalAny(f.Info, &info) != nil || info.Value != fmt.Sprintf("item %d", f.Index) {
					t.Errorf("item %d: got status %d, info %q; want a panic %q", f.Index, f.Status, f.Info, fmt.Sprintf("item %d", f.Index))
				}
			}
			if !bytes.Equal(failed, tt.panics) {
				t.Errorf("failed items: got %v, want %v", failed, tt.panics)
			}
			if want := fmt.Sprintf("%d items", tt.n); string(res.Values) != want {
				t.Errorf("values: got %q, want %q", res.Values, want)
			}
			// The worker serves on.
			c.task(2, "echo", []byte("next"))
			if got := c.value(2); string(got) != "next" {
				t.Errorf("after the chunk: got %q, want %q", got, "next")
			}
		})
	}
}

func TestRevokeQueued(t *testing.T) {
	t.Parallel()
	c := startChild(t)
	c.handshake()
	// Task 1 runs until it is cancelled; task 2 waits behind it.
	c.block(1)
	c.task(2, "echo", []byte("revoked"))
	c.send(wire.KindRevoke, 2, nil)
	if f := c.next(wire.KindRevoked); f.ID != 2 {
		t.Fatalf("got task %d revoked, want task 2", f.ID)
	}
	// A revoke of the running task does nothing; a cancel ends it.
	c.send(wire.KindRevoke, 1, nil)
	c.send(wire.KindCancel, 1, nil)
	var info wire.ErrorInfo
	if err := wire.UnmarshalAny(c.failure(1, wire.StatusError), &info); err != nil {
		t.Fatal(err)
	}
	if info.Msg != context.Canceled.Error() {
		t.Errorf("cancelled task: got %q, want %q", info.Msg, context.Canceled)
	}
	// Task 2 never runs: the next result is task 3's.
	c.task(3, "echo", []byte("after"))
	if got := c.value(3); string(got) != "after" {
		t.Errorf("got %q, want %q", got, "after")
	}
	// A revoke of a task that is done, or unknown, is answered by nothing:
	// the next frame is task 4's result.
	c.send(wire.KindRevoke, 3, nil)
	c.send(wire.KindRevoke, 99, nil)
	c.task(4, "echo", []byte("last"))
	if got := c.value(4); string(got) != "last" {
		t.Errorf("got %q, want %q", got, "last")
	}
}

func TestParentEOF(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(c *child)
	}{
		{name: "before the handshake", setup: func(c *child) {}},
		{name: "idle", setup: func(c *child) {
			c.handshake()
			c.task(1, "echo", []byte("x"))
			c.value(1)
		}},
		{name: "during a task", setup: func(c *child) {
			c.handshake()
			c.block(1)
			c.task(2, "echo", []byte("queued"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := startChild(t)
			tt.setup(c)
			c.conn.Close()
			c.exits(worker.ExitOK)
			if got := c.stderr.String(); got != "" {
				t.Errorf("stderr: got %q, want nothing", got)
			}
		})
	}
}
