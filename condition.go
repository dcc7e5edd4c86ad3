package mp

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/go-mp/mp/internal/shmem"
)

// Condition is a condition variable shared by processes, as Python's
// multiprocessing.Condition: processes wait, holding its lock, until
// another process that changed the state they wait on notifies them. It
// has its own lock, which works as a [Lock] does (not reentrant; taken
// over, with ErrOwnerDied, when its holder dies). Pass it like a
// [SharedMemory].
//
// A waiter may wake without a Notify meant for it (a Notify may be taken
// by a process that began to wait after it): wait in a loop on the
// condition itself, as WaitFor does.
//
// Cost: Notify with no waiter is two atomic loads; a wake-up is a futex
// wake and the waiter's wait for the lock.
type Condition struct{ object }

// The words of a condition's segment.
const (
	condLock    = 0 // the lock word
	condWaiters = 4 // processes in Wait
	condSignals = 8 // notifications not yet taken
)

// NewCondition makes a Condition, its lock free.
func NewCondition() (*Condition, error) { return newObject[Condition](kindCondition, 64) }

// UnmarshalCBOR decodes a Condition passed by the parent, in a worker.
func (c *Condition) UnmarshalCBOR(data []byte) error { return c.unmarshal(data, kindCondition) }

func (c *Condition) word(off int) *uint32 { return shmem.Word(c.h.mem, off) }

// Lock acquires the condition's lock, as Lock.Lock does.
func (c *Condition) Lock(ctx context.Context) error { return c.lock(ctx, "Condition") }

// Unlock releases the condition's lock, as Lock.Unlock does.
func (c *Condition) Unlock() error { return c.unlock("Condition") }

// held returns an error unless this process holds the lock.
func (c *Condition) held(op string) error {
	if c.own.closed() {
		return errClosed("Condition")
	}
	if atomic.LoadUint32(c.word(condLock))&^waitersBit != myPID {
		return fmt.Errorf("mp: Condition.%s without holding the Condition's lock", op)
	}
	return nil
}

// Wait releases the lock, which the caller must hold, waits until a Notify
// wakes it or ctx ends, and takes the lock again before it returns, in
// either case (then it returns ctx's cause). Taking the lock again waits
// for it as long as its holder lives, whatever ctx: the caller always
// holds it after Wait. If its holder died meanwhile, the error matches
// ErrOwnerDied.
func (c *Condition) Wait(ctx context.Context) error {
	if ctx == nil {
		return nilContext("Condition.Wait")
	}
	if err := c.held("Wait"); err != nil {
		return err
	}
	waiters, signals := c.word(condWaiters), c.word(condSignals)
	atomic.AddUint32(waiters, 1)
	unlockWord(c.word(condLock))
	var werr error
	for {
		if s := atomic.LoadUint32(signals); s > 0 {
			if atomic.CompareAndSwapUint32(signals, s, s-1) {
				break
			}
			continue
		}
		if ctx.Err() != nil {
			werr = context.Cause(ctx)
			break
		}
		d := pollFor(ctx)
		shmem.Wait(signals, 0, d)
	}
	atomic.AddUint32(waiters, ^uint32(0))
	if werr != nil { // a notification left for no one is dropped
		for {
			s, w := atomic.LoadUint32(signals), atomic.LoadUint32(waiters)
			if s <= w || atomic.CompareAndSwapUint32(signals, s, w) {
				break
			}
		}
	}
	lerr := lockWord(context.WithoutCancel(ctx), c.word(condLock))
	return errors.Join(werr, lerr)
}

// WaitFor waits, as Wait does, until cond returns true, and returns at
// once if it already does. It calls cond with the lock held.
func (c *Condition) WaitFor(ctx context.Context, cond func() bool) error {
	var died error
	for !cond() {
		if err := c.Wait(ctx); err != nil {
			if !isOwnerDied(err) || ctx.Err() != nil {
				return err
			}
			died = err
		}
	}
	return died
}

// Notify wakes up to n processes waiting on the condition. The caller
// must hold the lock.
func (c *Condition) Notify(n int) error {
	if err := c.held("Notify"); err != nil {
		return err
	}
	waiters, signals := c.word(condWaiters), c.word(condSignals)
	for {
		w, s := atomic.LoadUint32(waiters), atomic.LoadUint32(signals)
		if n <= 0 || s >= w {
			return nil
		}
		k := min(uint32(n), w-s)
		if atomic.CompareAndSwapUint32(signals, s, s+k) {
			shmem.Wake(signals, int(k))
			return nil
		}
	}
}

// NotifyAll wakes every process waiting on the condition. The caller must
// hold the lock.
func (c *Condition) NotifyAll() error { return c.Notify(1 << 30) }

// ErrBrokenBarrier is the error of Barrier.Wait when the barrier is broken:
// a waiter's ctx ended, or Abort or Reset was called, before every party
// arrived.
var ErrBrokenBarrier = errors.New("mp: broken barrier")

// Barrier makes a fixed number of parties wait for each other, as Python's
// multiprocessing.Barrier: each Wait blocks until all the parties have
// called it, then they all go on, and the barrier is ready for the next
// round. Pass it like a [SharedMemory].
//
// A waiter whose ctx ends breaks the barrier, as a timeout does in Python:
// every waiter, and every Wait until Reset, gets ErrBrokenBarrier, so that
// no party waits for one that will not come. A party that dies before it
// arrives cannot be told from a late one; give the others' ctx a deadline.
// A party that dies while waiting was counted: the others are not held up.
//
// Cost: a Wait is a short critical section under an internal lock, and a
// futex wait; the last party wakes the others with one futex wake.
type Barrier struct{ object }

// The words of a barrier's segment; the outcome of each round (tripped or
// broken) is kept in a ring of bytes after them, for waiters that look
// late.
const (
	barLock    = 0  // internal lock, for arrivals
	barCount   = 4  // parties arrived this round
	barRound   = 8  // the round, advanced when it trips or is reset
	barParties = 12 // the number of parties
	barBroken  = 16 // 1 while broken
	barRing    = 64
	barRingLen = 4096 - barRing
)

// NewBarrier makes a Barrier for parties parties.
func NewBarrier(parties int) (*Barrier, error) {
	if parties < 1 || parties > 1<<30 {
		return nil, fmt.Errorf("mp: NewBarrier: %d parties: want 1 to 2^30", parties)
	}
	b, err := newObject[Barrier](kindBarrier, 4096)
	if err != nil {
		return nil, err
	}
	atomic.StoreUint32(b.word(barParties), uint32(parties))
	return b, nil
}

// UnmarshalCBOR decodes a Barrier passed by the parent, in a worker.
func (b *Barrier) UnmarshalCBOR(data []byte) error { return b.unmarshal(data, kindBarrier) }

func (b *Barrier) word(off int) *uint32 { return shmem.Word(b.h.mem, off) }

// outcome is where round r's outcome is kept: 1 if it was broken.
func (b *Barrier) outcome(r uint32) *byte { return &b.h.mem[barRing+int(r%barRingLen)] }

// critical runs f under the internal lock. A process that died in the
// middle of a trip (the count stored, the round not yet advanced) is
// repaired here: the round is advanced for it.
func (b *Barrier) critical(f func()) {
	err := lockWord(context.Background(), b.word(barLock))
	defer unlockWord(b.word(barLock))
	if isOwnerDied(err) && atomic.LoadUint32(b.word(barCount)) >= atomic.LoadUint32(b.word(barParties)) {
		b.advance(atomic.LoadUint32(b.word(barRound)), false)
	}
	f()
}

// Wait waits until every party has called Wait, and returns this party's
// arrival index, 0 to Parties()-1. If the barrier is or becomes broken
// before then, it returns ErrBrokenBarrier; if ctx ends first, it breaks
// the barrier and returns ctx's cause.
func (b *Barrier) Wait(ctx context.Context) (int, error) {
	if ctx == nil {
		return 0, nilContext("Barrier.Wait")
	}
	if b.own.closed() {
		return 0, errClosed("Barrier")
	}
	var idx int
	var round uint32
	var err error
	tripped := false
	b.critical(func() {
		if atomic.LoadUint32(b.word(barBroken)) == 1 {
			err = ErrBrokenBarrier
			return
		}
		round = atomic.LoadUint32(b.word(barRound))
		n := atomic.AddUint32(b.word(barCount), 1)
		idx = int(n - 1)
		if n >= atomic.LoadUint32(b.word(barParties)) { // the last: trip
			b.advance(round, false)
			tripped = true
		}
	})
	if err != nil || tripped {
		return idx, err
	}
	for r := b.word(barRound); ; {
		if atomic.LoadUint32(r) != round {
			if *b.outcome(round) == 1 {
				return 0, ErrBrokenBarrier
			}
			return idx, nil
		}
		if ctx.Err() != nil {
			b.critical(func() {
				if atomic.LoadUint32(r) == round {
					atomic.StoreUint32(b.word(barBroken), 1)
					b.advance(round, true)
				}
			})
			if *b.outcome(round) == 0 {
				return idx, nil // it tripped just before
			}
			return 0, context.Cause(ctx)
		}
		d := pollFor(ctx)
		shmem.Wait(r, round, d)
	}
}

// advance ends round r, tripped or broken, and wakes its waiters. It runs
// under the internal lock.
func (b *Barrier) advance(r uint32, broken bool) {
	var o byte
	if broken {
		o = 1
	}
	*b.outcome(r) = o
	atomic.StoreUint32(b.word(barCount), 0)
	atomic.StoreUint32(b.word(barRound), r+1)
	shmem.Wake(b.word(barRound), 1<<30)
}

// Abort breaks the barrier: its waiters, and every Wait until Reset, get
// ErrBrokenBarrier.
func (b *Barrier) Abort() {
	b.critical(func() {
		if atomic.LoadUint32(b.word(barBroken)) == 1 {
			return
		}
		atomic.StoreUint32(b.word(barBroken), 1)
		b.advance(atomic.LoadUint32(b.word(barRound)), true)
	})
}

// Reset returns the barrier to its first state, not broken, no party
// waiting; parties waiting get ErrBrokenBarrier.
func (b *Barrier) Reset() {
	b.critical(func() {
		if atomic.LoadUint32(b.word(barCount)) > 0 {
			b.advance(atomic.LoadUint32(b.word(barRound)), true)
		}
		atomic.StoreUint32(b.word(barBroken), 0)
	})
}

// Broken reports whether the barrier is broken.
func (b *Barrier) Broken() bool { return atomic.LoadUint32(b.word(barBroken)) == 1 }

// Waiting returns the number of parties waiting now.
func (b *Barrier) Waiting() int { return int(atomic.LoadUint32(b.word(barCount))) }

// Parties returns the number of parties the barrier waits for.
func (b *Barrier) Parties() int { return int(atomic.LoadUint32(b.word(barParties))) }
