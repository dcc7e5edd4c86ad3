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
// permits, the next Acquire that has waited 50ms in all for one
// gives the dead process's permits back, takes one, and returns an error
// matching [ErrOwnerDied], with the permit taken. A semaphore used to
// signal (one process releases, another acquires for good) charges the
// permits to the processes that took them: if one of them dies, its
// permits come back this way too, and the error says so. Up to 504
// processes at once are charged; permits taken beyond that are not given
// back when their holder dies.
//
// Cost: Acquire and Release, with a permit free and no waiter, are a few
// atomic operations on shared memory and no system call (see
// BenchmarkSemaphore in bench/, and bench/RESULTS.md). A process killed in the instant between
// taking a permit and charging it, or between uncharging one and giving
// it back, takes that permit with it: never is one permit given twice.
type Semaphore struct{ object }

// The words of a semaphore's segment: its state, then the table of
// holders, (pid, permits) pairs, an entry per process, claimed the first
// time it takes a permit.
const (
	semCount   = 0  // permits available
	semWaiters = 4  // processes waiting
	semBound   = 8  // the most permits, if bounded
	semBounded = 12 // 1 if bounded
	semLock    = 16 // the lock of those who give dead holders' permits back
	semUsed    = 20 // table entries in use (the highest, plus one)
	semTable   = 64
	semSize    = 4096
	semHolders = (semSize - semTable) / 8
)

// NewSemaphore makes a Semaphore with n permits, as Python's
// multiprocessing.Semaphore(n): Release may raise the count past n.
func NewSemaphore(n int) (*Semaphore, error) { return newSemaphore("NewSemaphore", n, false) }

// NewBoundedSemaphore makes a Semaphore with n permits whose Release past n
// permits fails, as Python's BoundedSemaphore(n) does.
func NewBoundedSemaphore(n int) (*Semaphore, error) {
	return newSemaphore("NewBoundedSemaphore", n, true)
}

func newSemaphore(op string, n int, bounded bool) (*Semaphore, error) {
	if n < 0 || n > 1<<30 {
		return nil, fmt.Errorf("mp: %s: %d permits: want 0 to 2^30", op, n)
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

// holder returns the words of table entry i: its pid and its permits.
func (s *Semaphore) holder(i int) (pid, n *uint32) {
	return s.word(semTable + 8*i), s.word(semTable + 8*i + 4)
}

// mine returns this process's entry in the table, claiming one the first
// time, or nil if the table is full.
func (s *Semaphore) mine() *uint32 {
	if i := s.h.semEntry.Load(); i > 0 {
		_, n := s.holder(int(i - 1))
		return n
	}
	used := s.word(semUsed)
	claim := func(i int) *uint32 {
		s.h.semEntry.Store(int32(i + 1))
		_, n := s.holder(i)
		return n
	}
	for {
		u := min(atomic.LoadUint32(used), semHolders) // shared memory: untrusted
		for i := range int(u) {
			pid, _ := s.holder(i)
			if p := atomic.LoadUint32(pid); p == myPID || p == 0 && atomic.CompareAndSwapUint32(pid, 0, myPID) {
				return claim(i)
			}
		}
		if u < semHolders {
			if atomic.CompareAndSwapUint32(used, u, u+1) {
				if pid, _ := s.holder(int(u)); atomic.CompareAndSwapUint32(pid, 0, myPID) {
					return claim(int(u))
				}
			}
			continue
		}
		for i := range int(u) { // full: an entry of a dead process, with no permit
			pid, n := s.holder(i)
			p := atomic.LoadUint32(pid)
			if atomic.LoadUint32(n) == 0 && !shmem.Alive(int(p)) && atomic.CompareAndSwapUint32(pid, p, myPID) {
				return claim(i)
			}
		}
		return nil
	}
}

// decrement takes one from n if it is not 0, and reports whether it did.
func decrement(n *uint32) bool {
	for {
		v := atomic.LoadUint32(n)
		if v == 0 {
			return false
		}
		if atomic.CompareAndSwapUint32(n, v, v-1) {
			return true
		}
	}
}

// uncharge takes a permit from this process's entry or, if it holds none,
// from another's.
func (s *Semaphore) uncharge() {
	if n := s.mine(); n != nil && decrement(n) {
		return
	}
	for i := range int(atomic.LoadUint32(s.word(semUsed))) {
		if _, n := s.holder(i); decrement(n) {
			return
		}
	}
}

// reclaim gives back the permits of holders that died, and returns an
// error that says whose, or nil. Reclaimers take the internal lock; a
// holder's permits are swapped out at once, so none is given back twice.
func (s *Semaphore) reclaim() error {
	lockWord(context.Background(), s.word(semLock))
	defer unlockWord(s.word(semLock))
	var dead []uint32
	total := uint32(0)
	for i := range int(atomic.LoadUint32(s.word(semUsed))) {
		pid, n := s.holder(i)
		p := atomic.LoadUint32(pid)
		if p == 0 || p == myPID || atomic.LoadUint32(n) == 0 || shmem.Alive(int(p)) {
			continue
		}
		if k := atomic.SwapUint32(n, 0); k > 0 {
			dead = append(dead, p)
			total += k
		}
	}
	if total == 0 {
		return nil
	}
	c := s.word(semCount)
	for {
		v := atomic.LoadUint32(c)
		w := v + total
		if atomic.LoadUint32(s.word(semBounded)) == 1 {
			w = min(w, atomic.LoadUint32(s.word(semBound)))
		}
		if atomic.CompareAndSwapUint32(c, v, w) {
			break
		}
	}
	return fmt.Errorf("%w: %d permits of the semaphore held by process(es) %v, which died, were given back, and this process took one", ErrOwnerDied, total, dead)
}

// take takes a permit if one is free or, with reclaim, if a dead holder's
// can be given back (then the error matches ErrOwnerDied).
func (s *Semaphore) take(reclaim bool) (bool, error) {
	var err error
	if reclaim && atomic.LoadUint32(s.word(semCount)) == 0 {
		err = s.reclaim()
	}
	if !decrement(s.word(semCount)) {
		return false, nil
	}
	// A process killed here has a permit not charged: not given back.
	if n := s.mine(); n != nil {
		atomic.AddUint32(n, 1)
	}
	return true, err
}

// TryAcquire takes a permit if one is free, or a dead holder's (then the
// error matches ErrOwnerDied), and reports whether it did.
func (s *Semaphore) TryAcquire() (bool, error) {
	defer runtime.KeepAlive(s) // see object
	if s.own.closed() {
		return false, errClosed("Semaphore")
	}
	if ok, err := s.take(false); ok {
		return ok, err
	}
	return s.take(true)
}

// Acquire takes a permit, waiting while there is none, until ctx ends
// (then it returns ctx's cause, without a permit). If the permit was a
// dead holder's, given back, the error matches ErrOwnerDied.
func (s *Semaphore) Acquire(ctx context.Context) error {
	defer runtime.KeepAlive(s) // see object
	if ctx == nil {
		return nilContext("Semaphore.Acquire")
	}
	if s.own.closed() {
		return errClosed("Semaphore")
	}
	c := s.word(semCount)
	lastCheck := time.Now()
	ok, err := spin(func() (bool, error) { return s.take(false) })
	for ; !ok; ok, err = s.take(false) {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		atomic.AddUint32(s.word(semWaiters), 1)
		d := pollFor(ctx)
		shmem.Wait(c, 0, d)
		atomic.AddUint32(s.word(semWaiters), ^uint32(0))
		if time.Since(lastCheck) >= deadPoll {
			// Waited that long in all, however often woken by permits
			// that others took: has a holder died?
			lastCheck = time.Now()
			if ok, err := s.take(true); ok {
				return err
			}
		}
	}
	return err
}

// Release gives a permit back. For a bounded semaphore, it returns an
// error, and gives nothing back, if all its permits are already free.
func (s *Semaphore) Release() error {
	defer runtime.KeepAlive(s) // see object
	if s.own.closed() {
		return errClosed("Semaphore")
	}
	c := s.word(semCount)
	bound, bounded := atomic.LoadUint32(s.word(semBound)), atomic.LoadUint32(s.word(semBounded)) == 1
	if bounded && atomic.LoadUint32(c) >= bound {
		return fmt.Errorf("mp: Semaphore.Release past its bound of %d permits", bound)
	}
	// Uncharged before it is given back: a process killed in between loses
	// the permit, rather than have its death give it back a second time,
	// which would let one holder too many in.
	s.uncharge()
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
//
// Cost: Set is a store and a futex wake; Wait on a set flag is a load. An
// Event has no owner: a process that dies leaves it as it was.
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
	defer runtime.KeepAlive(e) // see object
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
		d := pollFor(ctx)
		shmem.Wait(e.word(), 0, d)
	}
	return nil
}
