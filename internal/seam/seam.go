// Package seam is the boundary between mp's call layer and a transport
// that runs a pool's batches somewhere other than in the pool's own worker
// processes (package natspool). It is internal: the transport is part of
// this module, and users reach it through natspool.NewPool, never by
// implementing Backend themselves.
//
// Package mp fills in the hooks (NewPool, RunBatch, Registered) from its
// init, so that natspool can call into mp without mp exporting them.
package seam

import (
	"context"
	"sync"
	"time"
)

// A Backend runs a pool's batches somewhere other than in worker
// processes of the pool's own. The pool still cuts the input into
// batches, queues them fairly between calls, bounds the queue, orders and
// collects the results, and reports progress; the backend only carries
// each batch to a worker and its outcome back. The pool calls Run and
// Cancel from any goroutine.
type Backend interface {
	// Capacity is how many batches the backend takes at once: the pool
	// keeps up to that many running. It is called once, by NewPool.
	Capacity() int
	// Run starts b. The backend calls b.Done exactly once, from any
	// goroutine, with what RunBatch returned on the worker, or with an
	// error if the batch could not be run (its workers were lost, say).
	Run(b *Batch)
	// Cancel asks the backend to stop b, which the pool has failed with
	// its call's cause. The pool calls it only after Run(b) has returned.
	// b.Done may still follow; the pool ignores it.
	Cancel(b *Batch)
	// Close stops the backend, once the pool has failed what was running.
	Close() error
}

// Batch is one batch of a pool that has a Backend: consecutive items of a
// call, encoded.
type Batch struct {
	ID       uint64        // unique among the pool's batches
	Func     string        // the registered function
	Items    int           // how many items Args holds: 1, or a chunk's length
	Args     []byte        // the items, encoded
	Attempt  int           // 0 the first time it is run
	Deadline time.Time     // the call's deadline, if any
	Timeout  time.Duration // PoolOptions.TaskTimeout, per item; 0 if none

	once sync.Once
	done func(b *Batch, result []byte, err error)
}

// NewBatch returns a batch whose Done calls done, once.
func NewBatch(done func(b *Batch, result []byte, err error)) *Batch {
	return &Batch{done: done}
}

// Done hands the batch's outcome to its pool: result is what RunBatch
// returned on the worker, or err says why there is none. Only the first
// call counts.
func (b *Batch) Done(result []byte, err error) {
	b.once.Do(func() {
		if b.done != nil {
			b.done(b, result, err)
		}
	})
}

// The hooks package mp sets from its init. Pools are passed as any
// because this package cannot import mp: the value is an *mp.Pool and
// opts an mp.PoolOptions.
var (
	// NewPool makes a pool whose batches b runs.
	NewPool func(ctx context.Context, opts any, b Backend) (any, error)
	// RunBatch runs, on a worker host's local pool, a batch that a
	// Backend carried there, and returns its outcome encoded for Done.
	RunBatch func(ctx context.Context, pool any, b *Batch) ([]byte, error)
	// Registered reports whether a function of that name is registered.
	Registered func(name string) bool
	// Fingerprint is mp.Fingerprint.
	Fingerprint func() string
)
