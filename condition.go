package mp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
// Waiters queue in the order they call Wait. A notification goes only to
// waiters that were waiting when it was made: NotifyAll wakes every one of
// them; Notify(n) wakes the n that have waited longest (all of them, if
// fewer wait), passing over those that have given up (their ctx ended) or
// died. A Wait that begins after a Notify is not woken by it, and a
// notification is never lost to it, so a waiter wakes only when notified
// (or when its ctx ends). Still wait in a loop on the state itself, as
// WaitFor does: another process may change it again between the Notify
// and the waiter's return, and a waiter holds the lock only after that.
//
// A waiter that is killed while it waits leaves nothing behind: Notify
// passes over it, as over one that gave up (a process whose ID has been
// reused since it died is taken for the waiter, as with Lock, and a
// Notify may be spent on it). At most 1008 waiters, of all the processes,
// wait at once; Wait fails beyond that.
//
// Cost: Notify with no waiter is two loads; a wake-up is a futex wake and
// the waiter's wait for the lock. NotifyAll, and Notify(n) when n or fewer
// wait, wake them all without looking at them; a Notify(n) that must
// choose among more waiters reads the /proc entry of each it chooses in
// another process, to pass over the dead.
type Condition struct{ object }

// The words of a condition's segment: the lock, two ticket counters, and
// a ring of slots, one a waiter. Waiter t (its ticket, from condNext)
// keeps its process ID in slot t%condMaxWaiters while it waits, and
// sleeps on that slot; it has been notified once condGranted is past t.
// Both counters change only under the lock, and wrap: tickets are
// compared by their difference.
const (
	condLock       = 0 // the lock word
	condGranted    = 4 // tickets below it are notified
	condNext       = 8 // the next waiter's ticket
	condSlots      = 64
	condSize       = 4096
	condMaxWaiters = (condSize - condSlots) / 4
)

// NewCondition makes a Condition, its lock free.
func NewCondition() (*Condition, error) { return newObject[Condition](kindCondition, condSize) }

// UnmarshalCBOR decodes a Condition passed by the parent, in a worker.
func (c *Condition) UnmarshalCBOR(data []byte) error { return c.unmarshal(data, kindCondition) }

func (c *Condition) word(off int) *uint32 { return shmem.Word(c.h.mem, off) }

// slot is the slot of ticket t.
func (c *Condition) slot(t uint32) *uint32 {
	return c.word(condSlots + 4*int(t%condMaxWaiters))
}

// notified reports whether ticket t has been notified.
func (c *Condition) notified(t uint32) bool {
	return int32(atomic.LoadUint32(c.word(condGranted))-t) > 0
}

// Lock acquires the condition's lock, as Lock.Lock does.
func (c *Condition) Lock(ctx context.Context) error {
	defer runtime.KeepAlive(c) // see object
	return c.lock(ctx, "Condition")
}

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
// made after this call began wakes it, or ctx ends, and takes the lock
// again before it returns, in either case. It returns nil if it was
// notified, even if ctx ended meanwhile (the notification is not lost),
// else ctx's cause. Taking the lock again waits for it as long as its
// holder lives, whatever ctx: the caller always holds it after Wait. If
// its holder died meanwhile, the error matches ErrOwnerDied. Wait fails at
// once, the lock still held, if 1008 waiters already wait.
func (c *Condition) Wait(ctx context.Context) error {
	defer runtime.KeepAlive(c) // see object
	if ctx == nil {
		return nilContext("Condition.Wait")
	}
	if err := c.held("Wait"); err != nil {
		return err
	}
	t := atomic.LoadUint32(c.word(condNext))
	if t-atomic.LoadUint32(c.word(condGranted)) >= condMaxWaiters && !c.compact() {
		return fmt.Errorf("mp: Condition.Wait: %d processes already wait on the Condition, the most it takes", condMaxWaiters)
	}
	slot := c.slot(t)
	atomic.StoreUint32(slot, myPID)
	atomic.StoreUint32(c.word(condNext), t+1)
	unlockWord(c.word(condLock))
	var werr error
	for !c.notified(t) {
		if ctx.Err() != nil {
			werr = context.Cause(ctx)
			break
		}
		shmem.Wait(slot, myPID, pollFor(ctx))
	}
	lerr := lockWord(context.WithoutCancel(ctx), c.word(condLock))
	if werr != nil {
		// Under the lock, no Notify can choose this waiter any more:
		// either one did already, or none will (its slot says so).
		if c.notified(t) {
			werr = nil
		} else {
			atomic.StoreUint32(slot, 0)
			c.trim()
		}
	}
	return errors.Join(werr, lerr)
}

// trim drops, under the lock, the tickets of waiters that gave up at
// either end of the queue, so that waits that keep timing out, with no
// Notify, do not fill it.
func (c *Condition) trim() {
	granted, next := c.word(condGranted), c.word(condNext)
	for g := atomic.LoadUint32(granted); g != atomic.LoadUint32(next) && atomic.LoadUint32(c.slot(g)) == 0; g++ {
		atomic.StoreUint32(granted, g+1)
	}
	for n := atomic.LoadUint32(next); n != atomic.LoadUint32(granted) && atomic.LoadUint32(c.slot(n-1)) == 0; n-- {
		atomic.StoreUint32(next, n-1)
	}
}

// compact drops, under the lock, the tickets at the head of a full queue
// of waiters that gave up or died, and reports whether there is room now.
func (c *Condition) compact() bool {
	granted, next := c.word(condGranted), atomic.LoadUint32(c.word(condNext))
	for g := atomic.LoadUint32(granted); g != next; g++ {
		if p := atomic.LoadUint32(c.slot(g)); p != 0 && (p == myPID || shmem.Alive(int(p))) {
			break
		}
		atomic.StoreUint32(c.slot(g), 0)
		atomic.StoreUint32(granted, g+1)
	}
	return next-atomic.LoadUint32(granted) < condMaxWaiters
}

// WaitFor waits, as Wait does, until cond returns true, and returns at
// once if it already does. It calls cond with the lock held.
func (c *Condition) WaitFor(ctx context.Context, cond func() bool) error {
	defer runtime.KeepAlive(c) // see object
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

// Notify wakes the n processes that have waited longest on the condition,
// or every waiter if fewer wait, passing over waiters that gave up or
// died; n <= 0 wakes none. The caller must hold the lock.
func (c *Condition) Notify(n int) error {
	defer runtime.KeepAlive(c) // see object
	if err := c.held("Notify"); err != nil {
		return err
	}
	granted, next := c.word(condGranted), atomic.LoadUint32(c.word(condNext))
	all := n >= int(next-atomic.LoadUint32(granted)) // no need to tell the dead
	for t := atomic.LoadUint32(granted); n > 0 && t != next; t++ {
		slot := c.slot(t)
		p := atomic.LoadUint32(slot)
		// Granted before the slot is cleared: a waiter that sees its slot
		// change sees itself notified.
		atomic.StoreUint32(granted, t+1)
		if p == 0 {
			continue // gave up
		}
		atomic.StoreUint32(slot, 0)
		shmem.Wake(slot, 1)
		if all || p == myPID || shmem.Alive(int(p)) {
			n--
		}
	}
	return nil
}

// NotifyAll wakes every process waiting on the condition. The caller must
// hold the lock.
func (c *Condition) NotifyAll() error { return c.Notify(condMaxWaiters) }

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
	defer runtime.KeepAlive(b) // see object
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
	defer runtime.KeepAlive(b) // see object
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
	defer runtime.KeepAlive(b) // see object
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
