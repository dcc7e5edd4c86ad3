package mp

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/go-mp/mp/internal/spawn"
	"github.com/go-mp/mp/internal/wire"
	"github.com/go-mp/mp/internal/worker"
)

// Func is a function registered with [Register]: a name that parent and
// worker processes agree on, and the types of its argument and result.
// A Func is a small value; copy it freely. The zero Func is not registered:
// calls with it fail with [ErrNotRegistered].
type Func[T, R any] struct {
	name string
}

// Name returns the name f was registered under.
func (f Func[T, R]) Name() string { return f.name }

// String returns the name and signature of f, for messages.
func (f Func[T, R]) String() string {
	return f.name + signature(reflect.TypeFor[T](), reflect.TypeFor[R]())
}

// entry is one registered function.
type entry struct {
	name    string
	in, out reflect.Type
	// typeErr says why the argument or result type can never be encoded.
	// It is worked out at the first call, not in Register: every worker
	// runs every Register again as it starts, and the reflection would
	// add to the start of each.
	typeErr func() error
	handles bool // the argument type may hold shared objects
	handler worker.Handler
}

// registry holds every registered function. It is the package's only global
// mutable state, and it is frozen by Main: after that, parent and workers
// can rely on having the same registry, which the handshake checks.
var registry struct {
	mu          sync.Mutex
	funcs       map[string]*entry
	frozen      bool
	fingerprint string
}

// mainCalled records that Main ran in this process (as a parent: Main
// returned). Starting workers without it could never work, see [ErrNoMain].
var mainCalled atomic.Bool

// Register registers fn under name and returns the [Func] that calls it in
// worker processes. Call it only to initialize a package-level variable, so
// that every process of the program, parent and workers, registers the same
// functions in the same way:
//
//	var Square = mp.Register("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
// The name is what crosses the wire, and what a worker built from another
// commit must agree on: keep it stable. A name is 1 to 128 bytes of letters,
// digits and "_-.:/".
//
// T and R travel as CBOR (see the package documentation); a []byte travels
// as it is. A type that can never be encoded (one that holds a channel, a
// function, or a struct whose fields are all unexported) does not panic here: every call with f returns an error that
// names the type, before any process starts.
//
// Register panics, as a programming error found at init, if name is invalid
// or already registered, or if [Main] has already run.
func Register[T, R any](name string, fn func(ctx context.Context, arg T) (R, error)) Func[T, R] {
	if err := checkName(name); err != nil {
		panic(fmt.Sprintf("mp: Register(%q): %v", name, err))
	}
	if fn == nil {
		panic(fmt.Sprintf("mp: Register(%q): nil function", name))
	}
	in, out := reflect.TypeFor[T](), reflect.TypeFor[R]()
	e := &entry{name: name, in: in, out: out, handler: handler(name, fn), handles: holdsHandles(in)}
	e.typeErr = sync.OnceValue(func() error {
		if err := wire.CheckType(in); err != nil {
			return fmt.Errorf("mp: %s: the argument type cannot be encoded: %w", name, err)
		}
		if err := wire.CheckType(out); err != nil {
			return fmt.Errorf("mp: %s: the result type cannot be encoded: %w", name, err)
		}
		return nil
	})

	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.frozen {
		panic(fmt.Sprintf("mp: Register(%q) called after mp.Main: register functions only in package-level var declarations, which run before main", name))
	}
	if registry.funcs == nil {
		registry.funcs = make(map[string]*entry)
	}
	if old, dup := registry.funcs[name]; dup {
		panic(fmt.Sprintf("mp: Register(%q): name already registered for %s: every registered function needs its own name", name, old.name+signature(old.in, old.out)))
	}
	registry.funcs[name] = e
	return Func[T, R]{name: name}
}

func checkName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("a name must be 1 to 128 bytes long")
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == ':' || c == '/'
		if !ok {
			return fmt.Errorf("byte %q is not allowed: use letters, digits and _-.:/", c)
		}
	}
	return nil
}

func signature(in, out reflect.Type) string { return fmt.Sprintf("(%v) %v", in, out) }

func handler[T, R any](name string, fn func(context.Context, T) (R, error)) worker.Handler {
	return func(ctx context.Context, args []byte, n int, each func(func(context.Context, int) error)) ([]byte, error) {
		if n == 1 {
			v, err := wire.Unmarshal[T](args)
			if err != nil {
				return nil, fmt.Errorf("mp: decoding the argument: %w", err)
			}
			var r R
			each(func(ctx context.Context, _ int) error {
				out, err := fn(ctx, v)
				if err == nil {
					r = out
				}
				return err
			})
			return encodeResults(name, r)
		}
		vs, err := wire.Unmarshal[[]T](args)
		if err == nil && len(vs) != n {
			err = fmt.Errorf("%w: %d arguments for a task of %d", wire.ErrMalformed, len(vs), n)
		}
		if err != nil {
			return nil, fmt.Errorf("mp: decoding the arguments: %w", err)
		}
		rs := make([]R, n)
		each(func(ctx context.Context, i int) error {
			out, err := fn(ctx, vs[i])
			if err == nil {
				rs[i] = out
			}
			return err
		})
		return encodeResults(name, rs)
	}
}

func encodeResults[V any](name string, v V) ([]byte, error) {
	out, err := wire.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mp: encoding the result: %w", err)
	}
	return out, nil
}

// Lookup returns the function registered under name, for callers that know
// functions by name only (a command line, a configuration file).
// It returns an error wrapping [ErrNotRegistered] if there is none, and an
// error naming both signatures if its types are not T and R.
func Lookup[T, R any](name string) (Func[T, R], error) {
	registry.mu.Lock()
	e := registry.funcs[name]
	registry.mu.Unlock()
	if e == nil {
		return Func[T, R]{}, fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	if in, out := reflect.TypeFor[T](), reflect.TypeFor[R](); e.in != in || e.out != out {
		return Func[T, R]{}, fmt.Errorf("mp: %s is registered as %s%s, not %s%s", name, name, signature(e.in, e.out), name, signature(in, out))
	}
	return Func[T, R]{name: name}, nil
}

// lookup returns f's registry entry, or an error that a call with f must
// return before it starts anything.
func (f Func[T, R]) lookup() (*entry, error) {
	if f.name == "" {
		return nil, fmt.Errorf("%w: the zero mp.Func; use the value mp.Register returned", ErrNotRegistered)
	}
	registry.mu.Lock()
	e := registry.funcs[f.name]
	registry.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotRegistered, f.name)
	}
	return e, e.typeErr()
}

// begin checks what every call with f checks before it starts anything:
// that f is registered and encodable, and that ctx is not done. It returns
// f's registry entry.
func (f Func[T, R]) begin(ctx context.Context) (*entry, error) {
	if ctx == nil {
		return nil, nilContext(f.name)
	}
	e, err := f.lookup()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, callError(f.name, context.Cause(ctx))
	}
	return e, nil
}

// freeze stops registration and returns the registry's fingerprint.
func freeze() string {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if !registry.frozen {
		registry.frozen = true
		lines := make([]string, 0, len(registry.funcs))
		for _, e := range registry.funcs {
			lines = append(lines, e.name+signature(e.in, e.out))
		}
		registry.fingerprint = wire.Fingerprint(lines)
	}
	return registry.fingerprint
}

// Main is the entry point of worker processes. Call it as the first
// statement of main, and of TestMain in tests:
//
//	func main() {
//		mp.Main()
//		// ...
//	}
//
// In the parent process Main freezes the function registry and returns at
// once. In a worker process (one started by mp, recognised by an
// environment variable) Main serves the tasks its parent sends and never
// returns: the process exits when its parent closes the connection or dies.
//
// Everything that runs before Main runs in every worker too: package init
// and the statements above the call. Keep init free of side effects.
func Main() {
	fp := freeze()
	mainCalled.Store(true)
	conn, err := spawn.Self()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(worker.ExitProtocol)
	}
	if conn == nil {
		return
	}
	isWorker.Store(true)
	os.Exit(worker.Serve(conn, worker.Config{
		Out:         spawn.Out,
		Fingerprint: fp,
		Lookup:      lookupHandler,
		Describe:    describeError,
		OnHello:     func(h wire.Hello) { workerName.Store(&h.Name) },
		Warm:        warmUp.name,
		WithTask:    withTaskInfo,

		NotRegistered: ErrNotRegistered,
		TaskTimeout:   ErrTaskTimeout,
		OnFDs:         receiveFDs,
		OnForget:      forgetHandles,
	}))
}

func lookupHandler(name string) (worker.Handler, bool) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if e := registry.funcs[name]; e != nil {
		return e.handler, true
	}
	return nil, false
}

// ready reports whether this process may start workers.
func ready() (fingerprint string, err error) {
	if !mainCalled.Load() {
		return "", ErrNoMain
	}
	return freeze(), nil
}

// TaskInfo is what a task's function may know of the task: its ctx
// carries it (TaskInfoFrom).
type TaskInfo struct {
	// ID identifies the chunk that holds the task in its pool (on a worker
	// host of natspool, in the submitting pool): the tasks of a chunk share
	// it, and it is the same each time the chunk runs again after its
	// worker was lost. A chunk split to find the task at fault runs as new
	// chunks, with IDs of their own.
	ID uint64
	// Attempt is 0 the first time the task runs, and counts the times it
	// ran again after its worker (or, in natspool, its worker host) was
	// lost (PoolOptions.Retries).
	Attempt int
}

type taskInfoKey struct{}

func withTaskInfo(ctx context.Context, id uint64, attempt int) context.Context {
	return context.WithValue(ctx, taskInfoKey{}, TaskInfo{ID: id, Attempt: attempt})
}

// TaskInfoFrom returns the TaskInfo of the task whose function got ctx (or
// a context made from it), and false for any other context.
func TaskInfoFrom(ctx context.Context) (TaskInfo, bool) {
	ti, ok := ctx.Value(taskInfoKey{}).(TaskInfo)
	return ti, ok
}
