package mp

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"runtime"
	"sync/atomic"

	"github.com/go-mp/mp/internal/shmem"
	"github.com/go-mp/mp/internal/wire"
)

// Queue is a queue of values of type T shared by processes, as Python's
// multiprocessing.Queue, SimpleQueue and JoinableQueue in one: any number
// of processes put and get, each producer's values come out in the order
// it put them, and each value comes out once. Pass it to other processes
// like a [SharedMemory].
//
// Its values are encoded (CBOR, as task arguments are) into a ring in
// shared memory; producers and consumers meet there, with futex wake-ups,
// and nothing is relayed through another process. A value bigger than
// half the ring streams through it while a consumer reads it.
//
// A producer that dies while it puts a value loses only that value: the
// others, and the queue, are unharmed. A consumer that dies while it gets
// a value loses at most that value. Neither holds the others up for more
// than the time it takes to see that it died (50ms).
//
// Cost: Put and Get of a small value are an encoding and a decoding, a
// copy into and out of the ring, and a compare-and-swap on each side; a
// futex wake only when the other side sleeps (see BenchmarkQueue in
// bench/, and bench/RESULTS.md).
type Queue[T any] struct {
	object
	r ring
}

// QueueOptions configures NewQueue. The zero value is ready to use.
type QueueOptions struct {
	// MaxLen is the most values the queue holds: Put waits while it is
	// full. Zero means as many as fit in its buffer.
	MaxLen int

	// BufferSize is the size of its ring in bytes, rounded up to a power
	// of two; values bigger than half of it are streamed through it.
	// Zero means 1 MiB.
	BufferSize int

	// MaxMessageSize is the largest encoded value it takes. Zero means the
	// default of task messages (WorkerOptions.MaxMessageSize).
	MaxMessageSize int
}

// queueHeader is the size of the header page of a Queue's segment.
const queueHeader = 4096

func (o QueueOptions) check(op string) (bufSize, maxMsg int, err error) {
	bufSize, maxMsg = 1<<20, wire.DefaultMaxFrame
	if o.MaxLen < 0 || o.MaxLen > 1<<30 || o.BufferSize < 0 || o.MaxMessageSize < 0 {
		return 0, 0, fmt.Errorf("mp: %s: MaxLen %d, BufferSize %d, MaxMessageSize %d: want 0 (the default) or a positive size", op, o.MaxLen, o.BufferSize, o.MaxMessageSize)
	}
	if o.BufferSize > 0 {
		bufSize = 1 << bits.Len(uint(max(o.BufferSize, 64)-1))
	}
	if uint64(bufSize) > shmem.MaxSize()/2 {
		return 0, 0, fmt.Errorf("mp: %s: BufferSize %d is over half this machine's memory", op, o.BufferSize)
	}
	if o.MaxMessageSize > 0 {
		maxMsg = min(o.MaxMessageSize, wire.MaxFrameLimit)
	}
	return bufSize, maxMsg, nil
}

// NewQueue makes an empty Queue.
func NewQueue[T any](opts QueueOptions) (*Queue[T], error) {
	if err := shmem.Supported(); err != nil {
		return nil, err
	}
	bufSize, maxMsg, err := opts.check("NewQueue")
	if err != nil {
		return nil, err
	}
	q, err := newObject[Queue[T]](kindQueue, queueHeader+bufSize)
	if err != nil {
		return nil, err
	}
	q.r = newRing("Queue", q.h.mem[:ringHeader], q.h.mem[queueHeader:])
	atomic.StoreUint32(q.r.w(rMaxLen), uint32(opts.MaxLen))
	atomic.StoreUint32(q.r.w(rMaxMessage), uint32(maxMsg))
	return q, nil
}

// UnmarshalCBOR decodes a Queue passed by the parent, in a worker.
func (q *Queue[T]) UnmarshalCBOR(data []byte) error {
	if err := q.unmarshal(data, kindQueue); err != nil {
		return err
	}
	q.r = newRing("Queue", q.h.mem[:ringHeader], q.h.mem[queueHeader:])
	return nil
}

// encodeMessage encodes v for a Queue or a Pipe whose limit is maxMsg.
func encodeMessage[T any](what string, v T, maxMsg int) ([]byte, error) {
	b, err := wire.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mp: %s: cannot encode a %T: %w", what, v, err)
	}
	if len(b) > maxMsg {
		return nil, fmt.Errorf("%w: %s: a %T of %d bytes encoded, over the limit of %d", ErrMessageTooLarge, what, v, len(b), maxMsg)
	}
	return b, nil
}

func decodeMessage[T any](what string, b []byte) (T, error) {
	v, err := wire.Unmarshal[T](b)
	if err != nil {
		return v, fmt.Errorf("mp: %s: %w", what, err)
	}
	return v, nil
}

func (q *Queue[T]) maxMessage() int { return int(atomic.LoadUint32(q.r.w(rMaxMessage))) }

// Put puts v in the queue, waiting while it is full, until ctx ends (then
// it returns ctx's cause, and v is not put). It fails with an error
// wrapping ErrQueueClosed if the queue is closed, or ErrMessageTooLarge if
// v encodes to more than the queue's MaxMessageSize.
func (q *Queue[T]) Put(ctx context.Context, v T) error {
	defer runtime.KeepAlive(q) // see object
	if ctx == nil {
		return nilContext("Queue.Put")
	}
	b, err := encodeMessage("Queue.Put", v, q.maxMessage())
	if err != nil {
		return err
	}
	return q.put(ctx, b)
}

func (q *Queue[T]) put(ctx context.Context, b []byte) error {
	if q.own.closed() {
		return errClosed("Queue")
	}
	err := q.r.put(ctx, b, nil)
	if err == errRingClosed {
		return fmt.Errorf("%w: Put on a closed Queue", ErrQueueClosed)
	}
	return err
}

// errTry is the cause of the context of TryPut and TryGet.
var errTry = errors.New("would wait")

// tryContext is a context that has ended: waits give up at once.
var tryContext = func() context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errTry)
	return ctx
}()

// TryPut puts v if the queue has room now; if not, it returns an error
// wrapping ErrQueueFull.
func (q *Queue[T]) TryPut(v T) error {
	defer runtime.KeepAlive(q) // see object
	b, err := encodeMessage("Queue.TryPut", v, q.maxMessage())
	if err != nil {
		return err
	}
	if err := q.put(tryContext, b); errors.Is(err, errTry) {
		return fmt.Errorf("%w: TryPut found no room", ErrQueueFull)
	} else if err != nil {
		return err
	}
	return nil
}

// Get takes the next value, waiting while the queue is empty, until ctx
// ends (then it returns ctx's cause). On a closed queue, it returns what
// is left, then an error wrapping ErrQueueClosed.
func (q *Queue[T]) Get(ctx context.Context) (T, error) {
	defer runtime.KeepAlive(q) // see object
	if ctx == nil {
		var zero T
		return zero, nilContext("Queue.Get")
	}
	return q.get(ctx, "Queue.Get")
}

func (q *Queue[T]) get(ctx context.Context, what string) (T, error) {
	var zero T
	if q.own.closed() {
		return zero, errClosed("Queue")
	}
	b, err := q.r.get(ctx, nil, nil)
	if err == errRingClosed {
		return zero, fmt.Errorf("%w: %s on a closed, empty Queue", ErrQueueClosed, what)
	}
	if err != nil {
		return zero, err
	}
	return decodeMessage[T](what, b)
}

// TryGet takes the next value if there is one now; if not, it returns an
// error wrapping ErrQueueEmpty (or ErrQueueClosed, if it is closed).
func (q *Queue[T]) TryGet() (T, error) {
	defer runtime.KeepAlive(q) // see object
	v, err := q.get(tryContext, "Queue.TryGet")
	if errors.Is(err, errTry) {
		return v, fmt.Errorf("%w: TryGet found no value", ErrQueueEmpty)
	}
	return v, err
}

// All returns an iterator over the values got from the queue until it is
// closed and empty (then it ends), or ctx ends or a value cannot be
// decoded (then it yields the error and ends).
func (q *Queue[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			v, err := q.Get(ctx)
			if errors.Is(err, ErrQueueClosed) {
				return
			}
			if !yield(v, err) || err != nil {
				return
			}
		}
	}
}

// Len returns how many values the queue holds now.
func (q *Queue[T]) Len() int { return int(q.r.len()) }

// Close closes the queue for every process that has it (unlike the Close
// of the other shared objects, which a process calls for itself): Put
// fails from then on, and consumers get what is left, then
// ErrQueueClosed. A Put in progress finishes first. Close is idempotent.
// The queue's memory is freed once no process can reach it.
func (q *Queue[T]) Close() error {
	defer runtime.KeepAlive(q) // see object
	q.r.close()
	return nil
}

// TaskDone tells the queue that a value got from it has been dealt with,
// as JoinableQueue.task_done does: Join waits for one TaskDone per value
// put. It returns an error if called more times than values were put.
func (q *Queue[T]) TaskDone() error {
	done := q.r.u64(rTasksDone)
	for {
		n := atomic.LoadUint64(done)
		if n >= q.r.puts() {
			return errors.New("mp: Queue.TaskDone called more times than values were put")
		}
		if atomic.CompareAndSwapUint64(done, n, n+1) {
			seq := q.r.w(rDoneSeq)
			atomic.AddUint32(seq, 1)
			shmem.Wake(seq, 1<<30)
			return nil
		}
	}
}

// Join waits until every value put has had its TaskDone, or ctx ends
// (then it returns ctx's cause). A consumer that dies before its TaskDone
// holds Join up for good: give ctx a deadline.
func (q *Queue[T]) Join(ctx context.Context) error {
	defer runtime.KeepAlive(q) // see object
	if ctx == nil {
		return nilContext("Queue.Join")
	}
	seq := q.r.w(rDoneSeq)
	for {
		seen := atomic.LoadUint32(seq)
		if atomic.LoadUint64(q.r.u64(rTasksDone)) >= q.r.puts() {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		d := pollFor(ctx)
		shmem.Wait(seq, seen, d)
	}
}
