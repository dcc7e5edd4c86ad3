package mp

import (
	"context"
	"fmt"
	"iter"
	"sync/atomic"
	"unsafe"
)

// Map calls f on every item of in, in the pool's workers, and returns the
// results in the order of in, as Python's Pool.map. It blocks until every
// item is done or one has failed.
//
// Items travel in chunks (see [ChunkSize]); the default, ceil(n / (4 ×
// workers)) but at most 256 KiB of items, makes Map about as cheap per
// item as a function call plus the encoding (see BenchmarkMap in bench/,
// and the README's table). With ChunkSize(1), each item is a round trip
// to a worker, several in flight per worker, as many as it runs in a
// millisecond (BenchmarkMapChunk1). On the first item that fails, Map cancels the rest and returns
// a *[TaskError] naming the item's index, whose cause is the function's
// error (a [*RemoteError]), a [*PanicError], an [*ExitError] if the item's
// worker died, or a context error if its deadline passed. Use [MapAll] to
// get every item's result or error.
//
// Cancelling ctx cancels the tasks (killing the workers running them after
// a short grace) and returns an error matching ctx's error. Map returns
// [ErrPoolClosed] on a closed pool, and an error wrapping
// [ErrNotRegistered] for a zero Func.
func Map[T, R any](ctx context.Context, p *Pool, f Func[T, R], in []T, opts ...CallOption) ([]R, error) {
	out, errs, err := mapAll(ctx, p, f, in, true, opts)
	if err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MapAsync starts [Map] and returns at once with its Future, as Python's
// Pool.map_async: Wait returns what Map would have returned. Cancelling
// ctx cancels the call, whose Future then holds ctx's cause. The call runs
// whether or not anyone waits for it, in one goroutine of its own. The
// pool reads in while the call runs: do not change its elements until the
// Future is done.
func MapAsync[T, R any](ctx context.Context, p *Pool, f Func[T, R], in []T, opts ...CallOption) *Future[[]R] {
	fu := &Future[[]R]{done: make(chan struct{})}
	if ctx == nil {
		fu.err = nilContext("MapAsync")
		close(fu.done)
		return fu
	}
	go func() {
		fu.value, fu.err = Map(ctx, p, f, in, opts...)
		close(fu.done)
	}()
	return fu
}

// MapAll is [Map] that runs every item whatever the others do, and returns
// each item's result and error: errs is nil if all succeeded, and
// otherwise holds a *[TaskError] at the index of each item that failed
// (out holds the zero value there). err is for the call as a whole: a
// closed pool, an unregistered function, or ctx ending (then the items not
// done have ctx's error in errs as well).
func MapAll[T, R any](ctx context.Context, p *Pool, f Func[T, R], in []T, opts ...CallOption) (out []R, errs []error, err error) {
	return mapAll(ctx, p, f, in, false, opts)
}

// chunkBytes bounds the default chunk: at most this many bytes of items
// (or of results, if larger), as they sit in memory. A chunk that big
// streams through the worker in a few milliseconds; bigger ones leave
// workers and the parent waiting on each other at the start and the end
// of a Map: a Map of a million ints took 1.5 times as long with
// 125,000-item chunks as with 31,250 (BenchmarkMap, 2 workers).
const chunkBytes = 256 << 10

// defaultChunk is the chunk size of a Map of n items on workers workers
// without ChunkSize: ceil(n / (4 × workers)), as in Python, and at most
// chunkBytes of items or results.
func defaultChunk[T, R any](n, workers int) int {
	chunk := (n + 4*workers - 1) / (4 * workers)
	size := max(unsafe.Sizeof(*new(T)), unsafe.Sizeof(*new(R)), 1)
	return max(min(chunk, chunkBytes/int(size)), 1)
}

func mapAll[T, R any](ctx context.Context, p *Pool, f Func[T, R], in []T, failFast bool, opts []CallOption) ([]R, []error, error) {
	cfg := newCallConfig(opts)
	e, err := f.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	out := make([]R, len(in))
	if len(in) == 0 {
		return out, nil, nil
	}
	chunk := cfg.chunk
	if chunk <= 0 {
		chunk = defaultChunk[T, R](len(in), p.opts.Workers)
	}
	c := newCollector[R](ctx, p, f.name, cfg)
	c.quiet, c.failFast, c.handles = cfg.progress == nil, failFast, e.handles
	if c.quiet {
		c.out = out // outcomes go straight to out, not through batches
	}
	defer c.finish()
	// Encode and queue the chunks in waves, a chunk for each worker (or
	// 1,024 items) first, then twice as many each time: the workers start
	// on the first chunks while the rest are encoded. (With NoWait, all at
	// once: it queues all or nothing. A small Map is queued all at once
	// too, and its tasks spread over the workers as they come free.)
	// A wave is whole chunks, so that every chunk but the last has chunk
	// items. Once ctx has ended, no more waves go: their items fail with
	// its cause.
	chunk = min(chunk, len(in))
	wave := len(in)
	if !cfg.nowait {
		wave = chunk * max(p.opts.Workers, (1024+chunk-1)/chunk)
	}
	submitted := len(in)
	for off := 0; off < len(in); off, wave = off+wave, 2*wave {
		if c.ctx.Err() != nil {
			submitted = off
			break
		}
		end := off + min(wave, len(in)-off)
		units, failures := makeUnits(&c.call, off, in[off:end], chunk, p.maxMessage())
		if err := c.submit(units, failures); err != nil {
			return nil, nil, callError(f.name, err)
		}
	}
	var errs []error
	var buf []batch[R]
	reported := 0
	for taken, done := 0, 0; done < submitted; {
		buf, _ = c.take(buf)
		for _, b := range buf {
			copy(out[b.index:], b.values)
			taken += len(b.values)
			for i, err := range b.errs {
				if err == nil {
					continue
				}
				if failFast {
					return nil, []error{err}, nil
				}
				if errs == nil {
					errs = make([]error, len(in))
				}
				errs[b.index+i] = err
			}
		}
		done = taken + c.doneDirect()
		if cfg.progress != nil {
			last := reported
			if n := c.progressed(done, &reported); n != last {
				cfg.progress(n, len(in))
			}
		}
	}
	if submitted < len(in) { // ctx ended before these were queued
		cause := context.Cause(c.ctx)
		if failFast {
			return nil, []error{c.taskError(submitted, cause)}, nil
		}
		if errs == nil {
			errs = make([]error, len(in))
		}
		for i := submitted; i < len(in); i++ {
			errs[i] = c.taskError(i, cause)
		}
	}
	if errs != nil && ctx.Err() != nil {
		return out, errs, callError(f.name, context.Cause(ctx))
	}
	return out, errs, nil
}

// Imap calls f on every item of in, in the pool's workers, and yields the
// results in the order of in, as Python's Pool.imap. It reads in lazily,
// keeping a bounded number of chunks in flight or done but waiting for
// those before them (8 per worker), so in may be endless, and one slow
// item holds the reading back.
//
// A failed item yields the zero R and a *[TaskError], and iteration goes
// on. Always range with both values, or errors are silently dropped:
//
//	for sq, err := range mp.Imap(ctx, pool, Square, slices.Values(nums)) {
//		if err != nil { ... }
//	}
//
// Breaking out of the loop cancels the items in flight and waits until
// their workers are free again before the loop statement ends. If ctx
// ends, the items in flight yield errors matching ctx's error and the
// iteration stops. The sequence is single-use: ranging over it a second
// time yields one error.
//
// Each item read costs a function call (in is ranged over, not pulled):
// see BenchmarkImapUnordered in bench/, and the README's table.
func Imap[T, R any](ctx context.Context, p *Pool, f Func[T, R], in iter.Seq[T], opts ...CallOption) iter.Seq2[R, error] {
	return imap(ctx, p, f, in, true, opts)
}

// ImapUnordered is [Imap] that yields results as they complete, not in
// input order, as Python's Pool.imap_unordered. Results carry no index: if
// you need it, have f return it with the result. Like Imap's, the sequence
// is single-use, and must be ranged over with its errors.
func ImapUnordered[T, R any](ctx context.Context, p *Pool, f Func[T, R], in iter.Seq[T], opts ...CallOption) iter.Seq2[R, error] {
	return imap(ctx, p, f, in, false, opts)
}

func imap[T, R any](ctx context.Context, p *Pool, f Func[T, R], in iter.Seq[T], ordered bool, opts []CallOption) iter.Seq2[R, error] {
	var used atomic.Bool
	return func(yield func(R, error) bool) {
		var zero R
		if used.Swap(true) {
			yield(zero, fmt.Errorf("mp: %s: the sequence Imap returns can be ranged over once only", f.name))
			return
		}
		if ctx == nil {
			yield(zero, nilContext(f.name))
			return
		}
		e, err := f.lookup()
		if err != nil {
			yield(zero, err)
			return
		}
		cfg := newCallConfig(opts)
		it := &imapRun[T, R]{p: p, f: f, cfg: cfg, ordered: ordered, yield: yield, handles: e.handles}
		it.run(ctx, in)
	}
}

// imapRun is the state of one Imap or ImapUnordered iteration.
type imapRun[T, R any] struct {
	p       *Pool
	f       Func[T, R]
	cfg     callConfig
	ordered bool
	handles bool // f's argument type may hold shared objects
	yield   func(R, error) bool

	c         *collector[R]
	window    int  // units in flight at most
	read      int  // items read from the input and submitted
	done      int  // items yielded
	reported  int  // items done, as last told to Progress
	exhausted bool // the input is all read
	buf       []batch[R]
	parked    map[int]batch[R] // by index, batches that came before their turn

	// The input's chunks are kept by their units (to split one where a
	// worker died) until each of their items has an outcome: then a
	// chunk's memory holds a chunk read later.
	chunk  int
	inputs map[int]*input[T] // by the index of their first item
	free   [][]T
}

// input is a chunk of the input, and how many of its items have no
// outcome yet.
type input[T any] struct {
	items []T
	left  int
}

func (it *imapRun[T, R]) run(ctx context.Context, in iter.Seq[T]) {
	it.c = newCollector[R](ctx, it.p, it.f.name, it.cfg)
	it.c.handles = it.handles
	defer it.c.finish()
	chunk := max(it.cfg.chunk, 1)
	it.chunk, it.inputs = chunk, make(map[int]*input[T])
	// Units in flight: 8 per worker (4 times the pool's depth of 2). With
	// half that, ImapUnordered of 200,000 ints in chunks of 1,000 took 10%
	// longer: the workers waited on the parent.
	it.window = 4 * it.p.depth * it.p.opts.Workers
	// The input drives: each item is a function call, not a coroutine
	// switch (iter.Pull), and the loop body blocks, taking results, while
	// the window is full, so that no more of the input is read than fits.
	batch := make([]T, 0, chunk)
	for v := range in {
		batch = append(batch, v)
		if len(batch) < chunk {
			continue
		}
		if !it.send(ctx, batch) {
			return
		}
		batch = it.alloc() // batch is kept by its units until its outcomes come
	}
	it.exhausted = true
	if len(batch) > 0 && !it.send(ctx, batch) {
		return
	}
	for it.pending() > 0 || it.done < it.read {
		if !it.receive() {
			return
		}
	}
}

// send waits for room in the window, taking results meanwhile, and
// submits batch, the input's items from it.read on. It returns false when
// the iteration is over: the consumer stopped, the call failed, or ctx
// ended (then what was in flight is yielded, and ctx's error last).
func (it *imapRun[T, R]) send(ctx context.Context, batch []T) bool {
	for it.full() && ctx.Err() == nil {
		if !it.receive() {
			return false
		}
	}
	if ctx.Err() != nil {
		for it.pending() > 0 || it.done < it.read {
			if !it.receive() {
				return false
			}
		}
		var zero R
		it.yield(zero, callError(it.f.name, context.Cause(ctx)))
		return false
	}
	units, failures := makeUnits(&it.c.call, it.read, batch, len(batch), it.p.maxMessage())
	if err := it.c.submit(units, failures); err != nil {
		var zero R
		it.yield(zero, callError(it.f.name, err))
		return false
	}
	it.inputs[it.read] = &input[T]{items: batch, left: len(batch)}
	it.read += len(batch)
	return true
}

// alloc returns an empty slice for a chunk of the input.
func (it *imapRun[T, R]) alloc() []T {
	if n := len(it.free); n > 0 {
		b := it.free[n-1]
		it.free = it.free[:n-1]
		return b
	}
	return make([]T, 0, it.chunk)
}

// settle counts the outcomes of b, and takes back the memory of the input
// chunk they are of once all of its items have one: no unit uses it then.
func (it *imapRun[T, R]) settle(b batch[R]) {
	at := b.index - b.index%it.chunk // every chunk but the last has it.chunk items
	in := it.inputs[at]
	if in == nil {
		return
	}
	if in.left -= len(b.values); in.left <= 0 {
		delete(it.inputs, at)
		clear(in.items) // no references kept from the free list
		it.free = append(it.free, in.items[:0])
	}
}

// receive waits for outcomes and yields what it can. It returns false if
// the consumer stopped.
func (it *imapRun[T, R]) receive() bool {
	it.buf, _ = it.c.take(it.buf)
	for _, b := range it.buf {
		it.settle(b)
		if !it.emit(b) {
			return false
		}
	}
	if it.cfg.progress != nil {
		last := it.reported
		if n := it.c.progressed(it.done, &it.reported); n != last {
			total := -1
			if it.exhausted {
				total = it.read
			}
			it.cfg.progress(n, total)
		}
	}
	return true
}

// full reports whether the window is full. Units in flight count in it,
// and so do Imap's results parked until those before them are yielded:
// else, behind one slow item, the other workers would go on through the
// input, and the parked results pile up, without bound. (Parked results
// wait for a unit in flight: with none, there are none.)
func (it *imapRun[T, R]) full() bool {
	pending := it.pending()
	return pending >= it.window || pending > 0 && pending+len(it.parked) >= it.window
}

func (it *imapRun[T, R]) pending() int {
	it.c.mu.Lock()
	defer it.c.mu.Unlock()
	return it.c.pending
}

// emit yields the items of b, or parks b until the items before it are yielded.
func (it *imapRun[T, R]) emit(b batch[R]) bool {
	if it.ordered && b.index != it.done {
		if it.parked == nil {
			it.parked = make(map[int]batch[R])
		}
		it.parked[b.index] = b
		return true
	}
	for {
		for i, v := range b.values {
			it.done++
			if !it.yield(v, b.err(i)) {
				return false
			}
		}
		var ok bool
		if b, ok = it.parked[it.done]; !ok {
			return true
		}
		delete(it.parked, it.done)
	}
}

// maxMessage returns the message size limit of the pool's workers.
func (p *Pool) maxMessage() int { return p.opts.Worker.maxMessage() }
