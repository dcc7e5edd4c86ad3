package mp

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// PoolOptions configures a [Pool]. The zero value of every field is a
// documented default, so PoolOptions{} is a pool of [CPUCount] workers.
//
// A pool's workers run Go with GOMAXPROCS 1, as the pool already runs one
// worker per CPU: a task that spreads its work over goroutines gets one
// CPU, and a data race that crashes a program with many threads (fatal
// error: concurrent map writes) shows less often. Set Worker.GOMAXPROCS
// to N, or -1 for Go's default (the CPUs the worker may use), or put
// GOMAXPROCS=N in Worker.Env; see [WorkerOptions.GOMAXPROCS].
type PoolOptions struct {
	// Workers is the number of worker processes. Zero means CPUCount().
	Workers int

	// MaxTasksPerWorker replaces a worker once it has been sent this many
	// tasks, as Python's maxtasksperchild does: a cure for leaky
	// libraries. It counts tasks (items), not batches; a batch is never cut
	// for it, so a worker may run up to one batch's tasks past the bound
	// (use ChunkSize(1) where the bound must be exact). Zero means never.
	MaxTasksPerWorker int

	// TaskTimeout is the default deadline of each task, counted from when
	// it starts running; a call's ctx deadline applies as well. A task past
	// it has its context cancelled, and if it has not returned after a
	// grace of 100ms, its worker's process group is killed and a new
	// worker started; the task fails with an error matching
	// context.DeadlineExceeded and ErrTaskTimeout. A task that returns an
	// error within the grace fails the same way; one that returns a value
	// within it keeps that value (on a busy machine, the parent may see a
	// quick task's result late).
	//
	// In a chunk of several items, each item has its own TaskTimeout. An
	// item that overruns it by the grace is reported by its worker, which
	// exits: the item fails, and the chunk's other items are run again by
	// other workers (so the items before it in its chunk run twice). Zero
	// means no timeout.
	TaskTimeout time.Duration

	// Retries is how many times a task whose worker died under it is run
	// again on another worker before it fails with an *ExitError. Zero
	// means never: each task runs at most once, unless it was in a chunk
	// of several items (see TaskTimeout).
	Retries int

	// MaxWorkerMemory recycles a worker whose resident set size is above
	// this many bytes after a task. Zero means no limit. It is read on Linux
	// only: elsewhere NewPool refuses it (errors.ErrUnsupported).
	MaxWorkerMemory int64

	// WorkerMemoryLimit kills a worker whose resident set size passes this
	// many bytes while it runs a task; the task fails with an error that
	// matches ErrMemoryLimit. Zero means twice MaxWorkerMemory (and no limit
	// if that is zero). The size is sampled every 50ms, so a fast-growing
	// task can overshoot it between samples. It is read on Linux only:
	// elsewhere NewPool refuses it (errors.ErrUnsupported).
	WorkerMemoryLimit int64

	// Init is run once by every worker when it starts, before any task,
	// like Python's initializer: see [Bind]. If it fails, the worker fails
	// to start; NewPool returns its error, and a pool whose workers fail to
	// start five times in a row fails its calls at once with an error
	// wrapping ErrWorkerStart, rather than keep them waiting; it goes on
	// trying to start workers (backing off up to a second between tries),
	// and recovers by itself once one starts.
	Init Bound

	// MaxQueued bounds the tasks (items) waiting in the pool's queue, as
	// Stats.TasksQueued counts them. Batches are queued whole: a batch
	// larger than the bound goes alone into an empty queue. It does not
	// count the batches a worker holds behind the one it runs, so that it
	// never waits for the parent: 1 for long tasks, up to 63 for very
	// short ones. A call that finds the queue full waits
	// for room while its ctx lives (a Map or Imap queues what fits and
	// waits to queue the rest); a call made with [NoWait] fails at once with
	// ErrQueueFull instead. Zero means no bound. A service should set it, so
	// that overload turns into fast refusals instead of a growing backlog;
	// see [Pool.Shutdown] for how to stop one.
	MaxQueued int

	// Worker says how worker processes are started, and with what
	// GOMAXPROCS (1 in a pool unless it says otherwise).
	Worker WorkerOptions

	// Logger receives the pool's lifecycle events: a worker started, died
	// (and why), was replaced or recycled. Nil means no logging.
	Logger *slog.Logger
}

// check names the first field of o that is out of range.
func (o PoolOptions) check() error {
	for _, f := range []struct {
		name  string
		value any
		bad   bool
	}{
		{"Workers", o.Workers, o.Workers < 0},
		{"MaxTasksPerWorker", o.MaxTasksPerWorker, o.MaxTasksPerWorker < 0},
		{"TaskTimeout", o.TaskTimeout, o.TaskTimeout < 0},
		{"Retries", o.Retries, o.Retries < 0},
		{"MaxWorkerMemory", o.MaxWorkerMemory, o.MaxWorkerMemory < 0},
		{"WorkerMemoryLimit", o.WorkerMemoryLimit, o.WorkerMemoryLimit < 0},
		{"MaxQueued", o.MaxQueued, o.MaxQueued < 0},
		{"Worker.GOMAXPROCS", o.Worker.GOMAXPROCS, o.Worker.GOMAXPROCS < -1},
		{"Worker.MaxMessageSize", o.Worker.MaxMessageSize, o.Worker.MaxMessageSize < 0},
		{"Worker.StartTimeout", o.Worker.StartTimeout, o.Worker.StartTimeout < 0},
		{"Worker.WaitDelay", o.Worker.WaitDelay, o.Worker.WaitDelay < 0},
	} {
		if f.bad {
			return fmt.Errorf("mp: NewPool: PoolOptions.%s is %v; it must not be negative (zero means its default; GOMAXPROCS may be -1)", f.name, f.value)
		}
	}
	return nil
}

// platform is what a system lets a pool do, where systems differ.
type platform struct {
	name string
	rss  bool // a worker's resident set size can be read (MaxWorkerMemory, WorkerMemoryLimit)
}

// unsupported names the first option of o that pl cannot honour, with an
// error matching errors.ErrUnsupported: an option that did nothing there,
// silently, would let a program that relies on it run without it.
func (o PoolOptions) unsupported(pl platform) error {
	for _, f := range []struct {
		name string
		set  bool
		ok   bool
	}{
		{"MaxWorkerMemory", o.MaxWorkerMemory != 0, pl.rss},
		{"WorkerMemoryLimit", o.WorkerMemoryLimit != 0, pl.rss},
	} {
		if f.set && !f.ok {
			return fmt.Errorf("mp: NewPool: PoolOptions.%s is set, but a worker's memory cannot be read on %s (only on Linux): leave it zero here: %w",
				f.name, pl.name, errors.ErrUnsupported)
		}
	}
	return nil
}

// Bound is a registered function bound to its argument, made by [Bind].
// The zero Bound is no function.
type Bound struct {
	fn      string
	args    []byte
	handles []*handle // shared objects in args; the pool references them
	err     error
}

// Bind binds f to arg, for [PoolOptions.Init]. The argument is encoded
// here; an error doing so is returned by NewPool.
func Bind[T, R any](f Func[T, R], arg T) Bound {
	e, err := f.lookup()
	if err != nil {
		return Bound{fn: f.name, err: err}
	}
	args, handles, err := encodeArgs(arg, e.handles)
	if err != nil {
		err = fmt.Errorf("mp: %s: encoding the argument %T: %w", f.name, arg, err)
	}
	// The pool that runs it takes its own references (NewPool); a Bound
	// kept but never used holds none.
	releaseAll(handles)
	return Bound{fn: f.name, args: args, handles: handles, err: err}
}

// CallOption configures one call of Map, MapAll, Imap, ImapUnordered,
// Apply or ApplyAsync ([ChunkSize] and [Progress] apply to the first four
// only).
type CallOption interface {
	apply(*callConfig)
}

type callConfig struct {
	chunk    int
	progress func(done, total int)
	nowait   bool
}

type optionFunc func(*callConfig)

func (f optionFunc) apply(c *callConfig) { f(c) }

// ChunkSize sets how many items travel to a worker together. Larger chunks
// cost fewer round trips; smaller ones balance load better and lose less
// when a worker dies. The default is ceil(n / (4 × workers)) for Map and
// MapAll, as in Python, but no more items than fit in 256 KiB of memory
// (32,768 ints), so that the workers start soon and finish together; and
// 1 for Imap and ImapUnordered.
func ChunkSize(n int) CallOption {
	return optionFunc(func(c *callConfig) { c.chunk = n })
}

// Progress has fn called as items complete, with how many are done and how
// many there are in all (-1 while an Imap's input is not exhausted). It is
// called from the goroutine that made the call (or iterates), never
// concurrently with itself.
func Progress(fn func(done, total int)) CallOption {
	return optionFunc(func(c *callConfig) { c.progress = fn })
}

// NoWait makes a call fail at once with an error wrapping [ErrQueueFull],
// instead of waiting, when the pool's queue has no room for all of its
// tasks (see [PoolOptions.MaxQueued]); then none of them runs. It is how a
// service under overload refuses work: answer 503 and let the client retry.
// Without MaxQueued it changes nothing. An Imap with NoWait that finds the
// queue full as it reads its input yields ErrQueueFull once and stops, like
// a loop that breaks: the items it queued and has not yielded are
// cancelled.
func NoWait() CallOption {
	return optionFunc(func(c *callConfig) { c.nowait = true })
}

func newCallConfig(opts []CallOption) callConfig {
	if len(opts) == 0 {
		return callConfig{}
	}
	return applyOptions(opts)
}

func applyOptions(opts []CallOption) callConfig {
	var c callConfig
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}
