package mp

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/shmem"
)

// Semaphore is a counting semaphore shared by processes, as Python's
// multiprocessing.Semaphore (and, made with a bound, BoundedSemaphore):
// Acquire takes one of its permits, waiting while there is none, and
// Release gives one back. Pass it like a [SharedMemory].
//
// A semaphore knows how many permits each process holds: a permit is
// charged to the process that took it, and Release pays back the caller's
// own permits first, then another process's. If a process dies holding
// permits, the next Acquire that finds none free (within 50ms of waiting)
// gives the dead process's permits back, takes one, and returns an error
// matching [ErrOwnerDied], with the permit taken. A semaphore used to
// signal (one process releases, another acquires for good) charges the
// permits to the processes that took them: if one of them dies, its
// permits come back this way too, and the error says so. Up to 504
// processes at once are charged; permits taken beyond that are not given
// back when their holder dies.
//
// Cost: Acquire and Release, with a permit free and no waiter, are a few
// atomic operations on shared memory and no system call.
type Semaphore struct{ object }

// The words of a semaphore's segment: its state, under its internal lock,
// then the table of holders, (pid, permits) pairs.
const (
	semCount   = 0  // permits available
	semWaiters = 4  // processes waiting
	semBound   = 8  // the most permits, if bounded
	semBounded = 12 // 1 if bounded
	semLock    = 16 // the internal lock
	semUsed    = 20 // table entries in use (the highest, plus one)
	semTable   = 64
	semSize    = 4096
	semHolders = (semSize - semTable) / 8
)

// NewSemaphore makes a Semaphore with n permits. With bounded, Release
// past n permits fails, as Python's BoundedSemaphore does.
func NewSemaphore(n int, bounded bool) (*Semaphore, error) {
	if n < 0 || n > 1<<30 {
		return nil, fmt.Errorf("mp: NewSemaphore: %d permits: want 0 to 2^30", n)
	}
	s, err := newObject[Semaphore](kindSemaphore, semSize)
	if err != nil {
		return nil, err
	}
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

// critical runs f under the internal lock. Each of its stores is one word:
// a process that dies in the middle leaves the table consistent, at worst
// with a permit not charged.
func (s *Semaphore) critical(f func()) {
	lockWord(context.Background(), s.word(semLock))
	defer unlockWord(s.word(semLock))
	f()
}

// holder returns the words of table entry i: its pid and its permits.
func (s *Semaphore) holder(i int) (pid, n *uint32) {
	return s.word(semTable + 8*i), s.word(semTable + 8*i + 4)
}

// charge adds a permit to this process's entry (under the internal lock).
func (s *Semaphore) charge() {
	used := int(atomic.LoadUint32(s.word(semUsed)))
	free := -1
	for i := range used {
		pid, n := s.holder(i)
		switch p := atomic.LoadUint32(pid); {
		case p == myPID:
			atomic.AddUint32(n, 1)
			return
		case p == 0 && free < 0:
			free = i
		}
	}
	if free < 0 {
		if used == semHolders {
			return // the table is full: not charged
		}
		free = used
		atomic.StoreUint32(s.word(semUsed), uint32(used+1))
	}
	pid, n := s.holder(free)
	atomic.StoreUint32(n, 1)
	atomic.StoreUint32(pid, myPID)
}

// uncharge takes a permit from this process's entry or, if it holds none,
// another's (under the internal lock).
func (s *Semaphore) uncharge() {
	used := int(atomic.LoadUint32(s.word(semUsed)))
	other := -1
	for i := range used {
		pid, n := s.holder(i)
		if atomic.LoadUint32(n) == 0 {
			continue
		}
		if atomic.LoadUint32(pid) == myPID {
			other = i
			break
		}
		if other < 0 {
			other = i
		}
	}
	if other >= 0 {
		pid, n := s.holder(other)
		if atomic.AddUint32(n, ^uint32(0)) == 0 {
			atomic.StoreUint32(pid, 0)
		}
	}
}

// reclaim gives back the permits of holders that died (under the internal
// lock), and returns an error that says whose, or nil.
func (s *Semaphore) reclaim() error {
	var dead []uint32
	total := uint32(0)
	for i := range int(atomic.LoadUint32(s.word(semUsed))) {
		pid, n := s.holder(i)
		p, k := atomic.LoadUint32(pid), atomic.LoadUint32(n)
		if p == 0 || k == 0 || p == myPID || shmem.Alive(int(p)) {
			continue
		}
		dead = append(dead, p)
		total += k
		atomic.StoreUint32(n, 0)
		atomic.StoreUint32(pid, 0)
	}
	if total == 0 {
		return nil
	}
	c := atomic.LoadUint32(s.word(semCount)) + total
	if atomic.LoadUint32(s.word(semBounded)) == 1 {
		c = min(c, atomic.LoadUint32(s.word(semBound)))
	}
	atomic.StoreUint32(s.word(semCount), c)
	return fmt.Errorf("%w: %d permits of the semaphore held by process(es) %v, which died, were given back, and this process took one", ErrOwnerDied, total, dead)
}

// take takes a permit if one is free or, with reclaim, if a dead holder's
// can be given back (then the error matches ErrOwnerDied).
func (s *Semaphore) take(reclaim bool) (ok bool, err error) {
	s.critical(func() {
		c := s.word(semCount)
		if atomic.LoadUint32(c) == 0 && reclaim {
			err = s.reclaim()
		}
		if v := atomic.LoadUint32(c); v > 0 {
			atomic.StoreUint32(c, v-1)
			s.charge()
			ok = true
		}
	})
	return ok, err
}

// TryAcquire takes a permit if one is free, or a dead holder's (then the
// error matches ErrOwnerDied), and reports whether it did.
func (s *Semaphore) TryAcquire() (bool, error) {
	if s.own.closed() {
		return false, errClosed("Semaphore")
	}
	if atomic.LoadUint32(s.word(semCount)) > 0 {
		if ok, err := s.take(false); ok {
			return ok, err
		}
	}
	return s.take(true)
}

// Acquire takes a permit, waiting while there is none, until ctx ends
// (then it returns ctx's cause, without a permit). If the permit was a
// dead holder's, given back, the error matches ErrOwnerDied.
func (s *Semaphore) Acquire(ctx context.Context) error {
	if ctx == nil {
		return nilContext("Semaphore.Acquire")
	}
	if s.own.closed() {
		return errClosed("Semaphore")
	}
	c := s.word(semCount)
	for i := 0; ; i++ {
		if i < spins || atomic.LoadUint32(c) > 0 {
			if ok, err := s.take(false); ok {
				return err
			}
		}
		if i < spins {
			runtime.Gosched()
			continue
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		atomic.AddUint32(s.word(semWaiters), 1)
		d := deadPoll
		if dl, ok := ctx.Deadline(); ok {
			d = min(d, max(time.Until(dl), time.Millisecond))
		}
		start := time.Now()
		shmem.Wait(c, 0, d)
		atomic.AddUint32(s.word(semWaiters), ^uint32(0))
		if time.Since(start) >= d && atomic.LoadUint32(c) == 0 {
			// None given back for a whole wait: has a holder died?
			if ok, err := s.take(true); ok {
				return err
			}
		}
	}
}

// Release gives a permit back. For a bounded semaphore, it returns an
// error, and gives nothing back, if all its permits are already free.
func (s *Semaphore) Release() error {
	if s.own.closed() {
		return errClosed("Semaphore")
	}
	var err error
	s.critical(func() {
		c := s.word(semCount)
		v := atomic.LoadUint32(c)
		if bound := atomic.LoadUint32(s.word(semBound)); atomic.LoadUint32(s.word(semBounded)) == 1 && v >= bound {
			err = fmt.Errorf("mp: Semaphore.Release past its bound of %d permits", bound)
			return
		}
		atomic.StoreUint32(c, v+1)
		s.uncharge()
	})
	if err == nil && atomic.LoadUint32(s.word(semWaiters)) > 0 {
		shmem.Wake(s.word(semCount), 1)
	}
	return err
}

// Value returns how many permits are free now.
func (s *Semaphore) Value() int { return int(atomic.LoadUint32(s.word(semCount))) }

// Event is a flag shared by processes, as Python's multiprocessing.Event:
// Wait blocks until another process (or this one) calls Set. Pass it like
// a [SharedMemory].
type Event struct{ object }

// NewEvent makes an Event, not set.
func NewEvent() (*Event, error) { return newObject[Event](kindEvent, 64) }

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
