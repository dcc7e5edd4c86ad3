// Package mp is process-based parallelism for Go: what Python's
// multiprocessing gives Python programmers (Process, Pool.map, imap,
// apply_async), with Go's types and idioms, and without its failure modes.
//
// Goroutines already use every core; mp is for what a goroutine cannot
// give. A segfault in cgo, a fatal runtime error, an out-of-memory kill or
// an os.Exit deep in a library kills a whole Go process, and recover cannot
// stop them: in an mp worker they fail one task, and the pool goes on. A
// goroutine cannot be killed; a worker past its deadline is. Workers have
// their own heaps, and can be recycled after a number of tasks or above a
// memory ceiling.
//
// # Tasks and chunks
//
// A task is one item of work for a registered function: one element of
// the input of [Map], [MapAll], [Imap] or [ImapUnordered], or the argument
// of one [Apply] or [ApplyAsync]. A chunk is the batch of consecutive
// tasks of one call that the pool sends to a worker together (see
// [ChunkSize]); an Apply's chunk is its one task. Every option, count and
// error named after a task counts tasks: [PoolOptions.TaskTimeout],
// [PoolOptions.MaxTasksPerWorker], [PoolOptions.MaxQueued], [TaskError]
// and the Tasks counts of [Stats]. Only [TaskInfo]'s ID names a chunk: the
// tasks of a chunk share it. A chunk whose worker dies is split and its
// tasks run again in smaller chunks, so that the task at fault fails
// alone.
//
// # Registering functions
//
// Workers are new processes of the same binary (Go cannot fork), so they
// find the functions to run by name. Register each function once, in a
// package-level variable, so that every process of the program registers
// the same functions:
//
//	var Square = mp.Register("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
// Arguments and results travel as CBOR: numbers, strings, slices, maps and
// structs with exported fields (with their cbor or json tags), and []byte
// as it is, without a copy into another encoding. A function whose argument
// or result type holds a channel, a function, an interface with methods,
// or a struct with fields but no exported ones (which would arrive as its
// zero value) is an error at every call, before any process starts. Register panics, at init, on a duplicate or
// invalid name.
//
// # Worker start-up
//
// Call [Main] as the first statement of main, and of TestMain in tests:
//
//	func main() {
//		mp.Main()
//		pool, err := mp.NewPool(ctx, mp.PoolOptions{})
//		...
//	}
//
//	func TestMain(m *testing.M) {
//		mp.Main()
//		os.Exit(m.Run())
//	}
//
// In the parent, Main returns at once. In a worker, which mp starts by
// re-executing the program's binary with an environment variable set, Main
// runs tasks and never returns. Package init, and whatever comes before
// Main, runs in every worker: keep init free of side effects. A program
// that starts workers without calling Main gets [ErrNoMain]; a worker that
// does not call Main, or runs another build of the program, is refused
// with an error that says so, never a fork bomb.
//
// The parent writes to a worker over a Unix socket pair, and the worker
// answers on a pipe; the worker's stdout and stderr are the parent's (or
// the writers of [WorkerOptions], written a whole line at a time). Each worker leads its own process group, so a
// terminal's Ctrl-C reaches the parent only, which decides what happens
// (cancel a context, call [Pool.Close]). Workers show in ps as
// "prog [mp PoolWorker-1]", and in top as "prog[mp]".
//
// A pool's workers run Go with GOMAXPROCS 1, as a pool already runs one
// worker per CPU: a task's own goroutines share one CPU there. Set
// [WorkerOptions.GOMAXPROCS] (to N, or -1 for Go's default), or put
// GOMAXPROCS=N in [WorkerOptions.Env], for tasks that need more.
//
// # Descendants
//
// A worker exits when its parent dies, however it dies: it sees its
// connection close (and on Linux it also gets a parent-death signal of
// mp's own from the kernel: a real-time signal, so that SIGTERM is left to
// the program's own handling), and
// it kills its descendants before it exits. When the parent kills a worker
// (a timeout, a memory limit, Close), it kills the worker's process group
// and every descendant of the worker it finds in /proc; when a worker exits
// on its own, the parent kills what is left of its process group. So the
// processes a task starts do not outlive its worker, nor the parent. What
// escapes: a descendant that leaves the worker's process group (setsid,
// setpgid) and whose own parent exits first, or whose worker dies on its
// own; contain programs that do that in a cgroup (a container, or
// systemd-run --scope).
//
// A program that runs as PID 1 (a container without an init) inherits every
// orphan: mp reaps the ones from its workers' process groups, and no
// others, since reaping a child of the program's own would steal its exit
// status from exec.Cmd.Wait. If the program also starts processes that may
// be orphaned, run it under an init (docker run --init).
//
// # Tests and tools
//
// In a -race build, a data race in a worker fails its task with an
// [*ExitError] carrying the race report (workers run with
// GORACE=halt_on_error=1 unless GORACE says otherwise). Under go test
// -cover, workers write their coverage data where the test binary does, so
// code that runs only in workers is counted, as long as the workers exit on
// their own: idle workers do at Close and Shutdown.
//
// # Errors
//
// A task's outcome reaches the caller as a value, never as a panic in the
// parent. Every failed item of a pool call is a [*TaskError] (which item,
// which function) whose cause is one of:
//
//   - the function's own error, as a [*RemoteError]: its type and message.
//     errors.Is matches the sentinels of the context, io and os packages,
//     and those declared with [RegisterError];
//   - a [*PanicError]: the panic value and the worker's stack; the worker
//     recovered and lives on;
//   - an [*ExitError]: the worker died (a signal, os.Exit, a fatal runtime
//     error), with its exit status and the head and tail of its stderr;
//   - a context error: the call's ctx ended, or the task ran past
//     [PoolOptions.TaskTimeout] (both match context.DeadlineExceeded; only
//     the second matches [ErrTaskTimeout]);
//   - [ErrMemoryLimit], [ErrMessageTooLarge], [ErrWorkerStart], or
//     [ErrProtocol] (an *ExitError: the worker sent bytes that are not
//     mp's protocol, and was killed).
//
// A call that finds the pool's bounded queue full (PoolOptions.MaxQueued)
// waits, or with [NoWait] fails with [ErrQueueFull]. A nil ctx is an
// error, not a panic.
//
// Test with errors.Is and errors.AsType. Calls on a closed pool return
// [ErrPoolClosed].
//
// # Sharing state
//
// These live in shared memory, as their namesakes in Python's
// multiprocessing do (Linux only for now): [SharedMemory], [Lock],
// [RLock], [Value], [Array], [Semaphore], [Event], [Condition], [Barrier],
// [Queue] and the two ends of a [Pipe] (each a [Conn]). Pass them to other
// processes in the argument of [Spawn], of a pool call or of [Bind], as
// Python passes them to Process: their descriptors cross the socket once
// per worker, and each worker maps them once. An anonymous SharedMemory is
// freed when the last process that holds it ends, however it ends. A lock
// whose holder died is taken over by the next Lock call, which returns an
// error matching [ErrOwnerDied]; a Semaphore gives a dead holder's permits
// back the same way.
//
// Each of them has MarshalCBOR and UnmarshalCBOR methods: they are how an
// object crosses to a worker inside an argument (the codec calls them; the bytes name a
// descriptor that travels beside them). They are not an extension point:
// call them only through the codec, and only mp's own objects have them.
//
// [Listen] and [Dial] connect processes that mp did not start, over a Unix
// or TCP socket with a shared key: each side gets a [Conn], which stays in
// its process.
//
// # Platforms
//
// Linux is the target. Other Unix systems build and run workers, with less
// (no shared objects, no memory limits, no parent-death signal, no search
// for descendants).
// Windows builds, and calls that start processes fail with an error that
// matches errors.ErrUnsupported.
//
// # Backends
//
// A pool's tasks run in local worker processes, or somewhere else. Package
// [github.com/go-mp/mp/natspool] is such a backend: its NewPool returns a
// *Pool whose chunks travel through NATS JetStream to worker hosts (the
// same program, on other machines, running natspool.RunWorker after
// Main), and every call works on it unchanged. Each host runs what it
// pulls in a local pool, with all of a local pool's isolation; a host that
// dies has its chunks delivered to another. The pool keeps what every
// backend shares: chunking, fair queueing between calls, the bounded
// queue, ordering, progress and the collection of results.
package mp
