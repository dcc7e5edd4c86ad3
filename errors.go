package mp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/go-mp/mp/internal/session"
	"github.com/go-mp/mp/internal/wire"
)

// Sentinel errors. Test for them with [errors.Is]; they are usually wrapped.
var (
	// ErrPoolClosed is returned by calls on a pool after Close or Shutdown.
	ErrPoolClosed = errors.New("mp: pool closed")

	// ErrNotRegistered is returned for a function that was not registered
	// with Register, or not in the worker that was asked to run it.
	ErrNotRegistered = errors.New("mp: function not registered")

	// ErrNoMain is returned by calls that start workers in a process that
	// has not called Main. Without Main, a worker would run the program's
	// main instead of the task it was started for.
	ErrNoMain = errors.New("mp: mp.Main was not called: call mp.Main() as the first statement of main (and of TestMain in tests)")

	// ErrMessageTooLarge is wrapped by the error of a call whose argument or
	// result is over the message size limit (WorkerOptions.MaxMessageSize),
	// and matched by the error of a message (a result, a value received on
	// a Conn or a Queue) whose decoded value would take more than 8 times
	// its size in memory, plus 16 KiB: decoding is refused before it
	// allocates (a long array of empty maps into an any, say).
	ErrMessageTooLarge = wire.ErrMessageTooLarge

	// ErrMemoryLimit is wrapped by the error of a task whose worker was
	// killed for passing the pool's hard memory limit.
	ErrMemoryLimit = errors.New("mp: worker memory limit exceeded")

	// ErrTaskTimeout is matched by the error of a task that ran past the
	// pool's TaskTimeout, whether it returned its context's error or was
	// killed. It wraps context.DeadlineExceeded, so that errors.Is(err,
	// context.DeadlineExceeded) holds for every deadline; test for
	// ErrTaskTimeout to tell the pool's per-task limit from the deadline of
	// the caller's ctx.
	ErrTaskTimeout = fmt.Errorf("mp: task timeout: %w", context.DeadlineExceeded)

	// ErrOwnerDied is matched by the error of Lock.Lock (and of the other
	// locks' acquiring calls) when the process that held the lock died
	// holding it: the caller now holds the lock, and the state it guards
	// may be half updated.
	ErrOwnerDied = errors.New("mp: lock owner died")

	// ErrQueueFull is wrapped by the error of a call made with NoWait when
	// the pool's queue has no room for its tasks (PoolOptions.MaxQueued),
	// and by that of Queue.TryPut when the Queue has none.
	ErrQueueFull = errors.New("mp: queue full")

	// ErrQueueEmpty is wrapped by the error of Queue.TryGet when the Queue
	// has no message.
	ErrQueueEmpty = errors.New("mp: queue empty")

	// ErrQueueClosed is wrapped by the error of Queue.Put on a closed
	// Queue, and of Queue.Get on one that is closed and empty.
	ErrQueueClosed = errors.New("mp: queue closed")

	// ErrProtocol is matched by the *ExitError of a worker that sent its
	// parent bytes that do not follow mp's protocol (a task that wrote to
	// the worker's connection, or memory corruption): the worker is killed
	// at once and replaced, and the error says what was wrong.
	ErrProtocol = errors.New("mp: worker broke the protocol")

	// ErrWorkerStart is wrapped by the errors of NewPool and Spawn when a
	// worker cannot start, and by those of a pool's calls while its workers
	// keep failing to start (a crash loop, or a failing Init): the pool
	// fails its calls at once, and keeps trying to start workers.
	ErrWorkerStart = errors.New("mp: workers fail to start")

	// ErrCorrupt is matched by the error (a [*CorruptError]) of a call on
	// a shared object whose memory holds what mp never writes there.
	ErrCorrupt = errors.New("mp: shared object corrupt")

	// ErrBrokenBarrier is the error of Barrier.Wait when the barrier is
	// broken: a waiter's ctx ended, or Abort or Reset was called, before
	// every party arrived.
	ErrBrokenBarrier = errors.New("mp: broken barrier")

	// ErrAuth is matched by the error of Dial when the listener does not
	// accept its key, or does not prove that it has the same one, and by
	// the error of Conn.Recv when a frame on a connection from Listen or
	// Dial was not sent by the peer as it arrived (injected, altered,
	// replayed or reordered on the way).
	ErrAuth = session.ErrAuth
)

// CorruptError reports a shared object (a Queue, a Pipe) whose memory
// holds what mp never writes there: a process that has it mapped wrote
// over it, a stray write in cgo code for instance. Shared memory is
// untrusted input: mp checks what it reads there, and fails the call that
// finds it wrong rather than crash or read out of the object's bounds. The
// object cannot be trusted any more: the calls that follow fail too,
// until it is dropped. It matches [ErrCorrupt].
type CorruptError struct {
	Object string // what the memory is: "Queue", "Pipe"
	// PID is the process that last wrote to the object, as the object
	// says (it may be corrupt too), or 0 if it is not known.
	PID    int
	Detail string // what was found wrong
}

// Error names the object, what was wrong, and the process that last wrote it.
func (e *CorruptError) Error() string {
	s := fmt.Sprintf("mp: %s is corrupt: %s", e.Object, e.Detail)
	if e.PID != 0 {
		s += fmt.Sprintf(" (last written by process %d)", e.PID)
	}
	return s + "; drop it and make a new one"
}

// Is reports whether target is [ErrCorrupt].
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// TaskError is the error of one task of a pool call: which function, which
// item of the input, and why. Unwrap gives the cause: a [*RemoteError], a
// [*PanicError], an [*ExitError], or a context error.
type TaskError struct {
	Func  string
	Index int // the item's index in the input; -1 for Apply
	Err   error
}

// Error returns "mp: func[index]: cause".
func (e *TaskError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("mp: %s: %v", e.Func, trimPrefix(e.Err))
	}
	return fmt.Sprintf("mp: %s[%d]: %v", e.Func, e.Index, trimPrefix(e.Err))
}

// Unwrap returns the cause.
func (e *TaskError) Unwrap() error { return e.Err }

// trimPrefix drops the "mp: " of a wrapped error, so messages say it once.
func trimPrefix(err error) string {
	s := err.Error()
	if len(s) > 4 && s[:4] == "mp: " {
		return s[4:]
	}
	return s
}

// PanicError is a panic inside a task, returned as a value. The worker
// recovered it and lives on. Stack is the worker goroutine's stack at the
// panic, as printed by runtime/debug.Stack.
type PanicError struct {
	Value string // the panic value, formatted with fmt.Sprint
	Stack []byte
}

// Error returns the panic value.
func (e *PanicError) Error() string { return "mp: task panicked: " + e.Value }

// ExitError reports a worker process that died while it held a task.
type ExitError struct {
	PID   int
	State *os.ProcessState // nil if the process could not be waited for
	// Output holds the first and last few kilobytes the worker wrote to
	// stderr: for a Go crash, the "fatal error" line and the stacks.
	Output []byte
	// Reason is set when mp killed the worker: the deadline, the memory limit.
	Reason string
	kill   killReason // why mp killed it, for Error and Is
	// Host is set for a worker on a worker host, which ran the task for a
	// pool of natspool: State is nil then, and PID is the pid there.
	Host string

	remote *remoteExit // how a worker on a worker host ended
}

// remoteExit is how a worker on a worker host ended.
type remoteExit struct {
	code   int            // -1 if a signal killed it
	signal syscall.Signal // the signal that did, or 0
}

// Error says how the worker ended, and quotes the line of its stderr that
// says why, if there is one.
func (e *ExitError) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "mp: worker %d ", e.PID)
	if e.kill.cause == causeProtocol {
		// How it ended says nothing: mp killed it for what it sent.
		fmt.Fprintf(&b, "broke the protocol and was killed: %s", trimPrefix(e.kill.err))
		return b.String()
	}
	if e.Host != "" {
		fmt.Fprintf(&b, "on %s ", e.Host)
	}
	switch {
	case e.remote != nil && e.remote.signal != 0:
		fmt.Fprintf(&b, "was killed by signal %v", e.remote.signal)
	case e.remote != nil:
		fmt.Fprintf(&b, "exited with code %d", e.remote.code)
	case e.State == nil:
		b.WriteString("was lost")
	case e.Signal() != nil:
		fmt.Fprintf(&b, "was killed by signal %v", e.Signal())
	default:
		fmt.Fprintf(&b, "exited with code %d", e.State.ExitCode())
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	if line := crashLine(e.Output); line != "" {
		fmt.Fprintf(&b, ": %s", line)
	}
	return b.String()
}

// Is reports whether target is [ErrProtocol] and the worker was killed for
// breaking the protocol.
func (e *ExitError) Is(target error) bool {
	return target == ErrProtocol && e.kill.cause == causeProtocol
}

// ExitCode returns the worker's exit code, or -1 if a signal killed it.
func (e *ExitError) ExitCode() int {
	if e.remote != nil {
		return e.remote.code
	}
	if e.State == nil {
		return -1
	}
	return e.State.ExitCode()
}

// Signal returns the signal that killed the worker, or nil.
func (e *ExitError) Signal() os.Signal {
	if e.remote != nil {
		if e.remote.signal == 0 {
			return nil
		}
		return e.remote.signal
	}
	if e.State == nil {
		return nil
	}
	if ws, ok := e.State.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return nil
}

// crashLine picks the line of a worker's stderr that says why it died.
func crashLine(out []byte) string {
	var last string
	for line := range bytes.Lines(out) {
		line = bytes.TrimSpace(line)
		for _, p := range [][]byte{[]byte("fatal error:"), []byte("WARNING: DATA RACE"), []byte("panic:"), []byte("unexpected fault"), []byte("SIG"), []byte("mp:")} {
			if bytes.HasPrefix(line, p) {
				return clip(string(line))
			}
		}
		if len(line) > 0 {
			last = string(line)
		}
	}
	return clip(last)
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// RemoteError is an error returned by a task function in a worker, as the
// parent sees it: the error's dynamic type and message. Errors.Is matches it
// against the sentinel errors declared with [RegisterError] (and the
// context, io and os sentinels, which are always declared).
type RemoteError struct {
	Type string // the error's dynamic type, as %T prints it
	Msg  string

	sentinel string
}

// Error returns the worker's error message.
func (e *RemoteError) Error() string { return e.Msg }

// Is reports whether the worker's error matched target, a sentinel known to both processes.
func (e *RemoteError) Is(target error) bool {
	if e.sentinel == "" {
		return false
	}
	sentinels.mu.Lock()
	s := sentinels.byKey[e.sentinel]
	sentinels.mu.Unlock()
	return s != nil && (s == target || errors.Is(s, target))
}

var sentinels struct {
	mu    sync.Mutex
	list  []error
	byKey map[string]error
}

func init() {
	for _, err := range []error{
		context.Canceled, context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF,
		os.ErrNotExist, os.ErrExist, os.ErrPermission, os.ErrDeadlineExceeded,
		ErrNotRegistered, ErrMessageTooLarge, ErrTaskTimeout, ErrCorrupt,
	} {
		RegisterError(err)
	}
}

// RegisterError declares a sentinel error that keeps its identity across
// processes: when a task's error matches err (errors.Is, in the worker), the
// parent's [*RemoteError] matches it too. Sentinels are known by their
// message, which must be unique among them. Like [Register], call it at
// package level only (in a var declaration or init), so that every process
// declares the same sentinels. It returns err.
func RegisterError(err error) error {
	sentinels.mu.Lock()
	defer sentinels.mu.Unlock()
	if sentinels.byKey == nil {
		sentinels.byKey = make(map[string]error)
	}
	key := err.Error()
	if old, dup := sentinels.byKey[key]; dup && old != err {
		panic(fmt.Sprintf("mp: RegisterError: another sentinel already has the message %q", key))
	}
	sentinels.byKey[key] = err
	sentinels.list = append(sentinels.list, err)
	return err
}

// describeError turns a task's error into what crosses the wire.
func describeError(err error) wire.ErrorInfo {
	info := wire.ErrorInfo{Type: fmt.Sprintf("%T", err), Msg: err.Error()}
	var tooLarge *wire.FrameTooLargeError
	if errors.As(err, &tooLarge) {
		info.Sentinel = ErrMessageTooLarge.Error()
		return info
	}
	sentinels.mu.Lock()
	defer sentinels.mu.Unlock()
	// The last declared match is the most specific: mp's own come first,
	// and a user's sentinel may wrap one of them (as ErrTaskTimeout wraps
	// context.DeadlineExceeded); Is matches what the sentinel wraps too.
	for _, s := range slices.Backward(sentinels.list) {
		if errors.Is(err, s) {
			info.Sentinel = s.Error()
			break
		}
	}
	return info
}

// remoteError is the parent's view of a task's error.
func remoteError(info wire.ErrorInfo) *RemoteError {
	return &RemoteError{Type: info.Type, Msg: info.Msg, sentinel: info.Sentinel}
}

// messageError wraps a frame size error so callers can test it with ErrMessageTooLarge.
func messageError(err error) error {
	var tooLarge *wire.FrameTooLargeError
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("%w: %s", ErrMessageTooLarge, trimPrefix(err))
	}
	return err
}

// prefixedError is err with a prefix, saying "mp: " once however deep the
// wrapping. It matches err and, if set, sentinel.
type prefixedError struct {
	prefix   string
	err      error
	sentinel error
}

func (e *prefixedError) Error() string { return e.prefix + trimPrefix(e.err) }

func (e *prefixedError) Unwrap() []error {
	if e.sentinel != nil {
		return []error{e.sentinel, e.err}
	}
	return []error{e.err}
}

// callError is err as a call of function fn returns it.
func callError(fn string, err error) error {
	return &prefixedError{prefix: "mp: " + fn + ": ", err: err}
}

// raceExitCode is the exit code of a race-enabled program that the race
// detector stopped.
const raceExitCode = 66

// nilContext is the error of a call made with a nil context, which in Go
// is always a mistake (os/exec panics on it; mp says so instead).
func nilContext(op string) error {
	return fmt.Errorf("mp: %s: nil Context: pass context.Background() or a context that bounds the call", op)
}
