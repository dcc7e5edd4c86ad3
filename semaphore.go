package mp

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/shmem"
)

// Semaphore is a counting semaphore shared by processes, as Python's
// multiprocessing.Semaphore (and, made with a bound, BoundedSemaphore):
// Acquire takes one of its permits, waiting while there is none, and
// Release gives one back. Pass it like a [SharedMemory].
//
// A semaphore does not know who holds its permits: a permit held by a
// process that dies is not given back. Where that matters, give each
// holder a [Lock] instead, which is taken over when its holder dies.
type Semaphore struct{ object }

// The words of a semaphore's segment.
const (
	semCount   = 0  // permits available
	semWaiters = 4  // processes waiting
	semBound   = 8  // the most permits, if bounded
	semBounded = 12 // 1 if bounded
)

// NewSemaphore makes a Semaphore with n permits. With bounded, Release
// past n permits fails, as Python's BoundedSemaphore does.
func NewSemaphore(n int, bounded bool) (*Semaphore, error) {
	if n < 0 || n > 1<<30 {
		return nil, fmt.Errorf("mp: NewSemaphore: %d permits: want 0 to 2^30", n)
	}
	if err := shmem.Supported(); err != nil {
		return nil, err
	}
	h, err := newHandle(kindSemaphore, 64)
	if err != nil {
		return nil, fmt.Errorf("mp: NewSemaphore: %w", err)
	}
	s := &Semaphore{object{h: h}}
	s.own = own(s, h)
	atomic.StoreUint32(s.word(semCount), uint32(n))
	if bounded {
		atomic.StoreUint32(s.word(semBound), uint32(n))
		atomic.StoreUint32(s.word(semBounded), 1)
	}
	return s, nil
}

// UnmarshalCBOR decodes a semaphore passed by the parent, in a worker.
func (s *Semaphore) UnmarshalCBOR(data []byte) error { return s.unmarshal(data, kindSemaphore) }

func (s *Semaphore) word(off int) *uint32 { return shmem.Word(s.h.mem, off) }

// TryAcquire takes a permit if one is free, and reports whether it did.
func (s *Semaphore) TryAcquire() bool {
	c := s.word(semCount)
	for {
		v := atomic.LoadUint32(c)
		if v == 0 {
			return false
		}
		if atomic.CompareAndSwapUint32(c, v, v-1) {
			return true
		}
	}
}

// Acquire takes a permit, waiting while there is none, until ctx ends
// (then it returns ctx's cause, without a permit).
func (s *Semaphore) Acquire(ctx context.Context) error {
	if ctx == nil {
		return nilContext("Semaphore.Acquire")
	}
	if s.own.closed() {
		return errClosed("Semaphore")
	}
	for {
		if s.TryAcquire() {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		atomic.AddUint32(s.word(semWaiters), 1)
		d := deadPoll
		if dl, ok := ctx.Deadline(); ok {
			d = min(d, max(time.Until(dl), time.Millisecond))
		}
		shmem.Wait(s.word(semCount), 0, d)
		atomic.AddUint32(s.word(semWaiters), ^uint32(0))
	}
}

// Release gives a permit back. For a bounded semaphore, it returns an
// error, and gives nothing back, if all its permits are already free.
func (s *Semaphore) Release() error {
	if s.own.closed() {
		return errClosed("Semaphore")
	}
	c := s.word(semCount)
	bound, bounded := atomic.LoadUint32(s.word(semBound)), atomic.LoadUint32(s.word(semBounded)) == 1
	for {
		v := atomic.LoadUint32(c)
		if bounded && v >= bound {
			return fmt.Errorf("mp: Semaphore.Release past its bound of %d permits", bound)
		}
		if atomic.CompareAndSwapUint32(c, v, v+1) {
			break
		}
	}
	if atomic.LoadUint32(s.word(semWaiters)) > 0 {
		shmem.Wake(c, 1)
	}
	return nil
}

// Value returns how many permits are free now.
func (s *Semaphore) Value() int { return int(atomic.LoadUint32(s.word(semCount))) }

// Event is a flag shared by processes, as Python's multiprocessing.Event:
// Wait blocks until another process (or this one) calls Set. Pass it like
// a [SharedMemory].
type Event struct{ object }

// NewEvent makes an Event, not set.
func NewEvent() (*Event, error) {
	if err := shmem.Supported(); err != nil {
		return nil, err
	}
	h, err := newHandle(kindEvent, 64)
	if err != nil {
		return nil, fmt.Errorf("mp: NewEvent: %w", err)
	}
	e := &Event{object{h: h}}
	e.own = own(e, h)
	return e, nil
}

// UnmarshalCBOR decodes an event passed by the parent, in a worker.
func (e *Event) UnmarshalCBOR(data []byte) error { return e.unmarshal(data, kindEvent) }

func (e *Event) word() *uint32 { return shmem.Word(e.h.mem, 0) }

// Set sets the flag and wakes every process waiting for it.
func (e *Event) Set() {
	atomic.StoreUint32(e.word(), 1)
	shmem.Wake(e.word(), 1<<30)
}

// Clear clears the flag.
func (e *Event) Clear() { atomic.StoreUint32(e.word(), 0) }

// IsSet reports whether the flag is set.
func (e *Event) IsSet() bool { return atomic.LoadUint32(e.word()) == 1 }

// Wait waits until the flag is set, or ctx ends (then it returns ctx's
// cause).
func (e *Event) Wait(ctx context.Context) error {
	if ctx == nil {
		return nilContext("Event.Wait")
	}
	if e.own.closed() {
		return errClosed("Event")
	}
	for !e.IsSet() {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		d := deadPoll
		if dl, ok := ctx.Deadline(); ok {
			d = min(d, max(time.Until(dl), time.Millisecond))
		}
		shmem.Wait(e.word(), 0, d)
	}
	return nil
}
