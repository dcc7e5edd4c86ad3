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
// or result type holds a channel or a function is an error at every call,
// before any process starts. Register panics, at init, on a duplicate or
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
// Parent and worker talk over a Unix socket pair; the worker's stdout and
// stderr are the parent's. Each worker leads its own process group, so a
// terminal's Ctrl-C reaches the parent only, which decides what happens
// (cancel a context, call [Pool.Close]). A worker exits when its parent
// dies, however it dies: it sees its connection close, and on Linux the
// kernel also kills it when the parent exits.
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
//     [PoolOptions.TaskTimeout] (errors.Is(err, context.DeadlineExceeded));
//   - [ErrMemoryLimit], [ErrMessageTooLarge], [ErrWorkerStart].
//
// Test with errors.Is and errors.AsType. Calls on a closed pool return
// [ErrPoolClosed].
//
// # Backends
//
// Today a pool's workers are local processes. The same calls are meant to
// reach workers on other machines through a distributed backend; that
// backend is not written yet.
package mp
