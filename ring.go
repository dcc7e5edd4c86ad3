package mp

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-mp/mp/internal/shmem"
)

// A ring is a queue of messages in shared memory, under Queue and Pipe:
// many producers and many consumers, in any processes, with nothing
// relayed through another process.
//
// Its state is a header of words; its data a ring of records, each a
// 16-byte header (length, flags, the message's number) and its payload
// padded to 16 bytes. A
// producer holds the put lock while it writes a message, a consumer the
// get lock while it reads one; the two sides meet only at the tail and
// head counters, so a producer and a consumer work at once. A message
// bigger than half the ring streams through it in fragments (first,
// middle, last), the producer writing while the consumer reads.
//
// Crashes: a record is published by one store of the tail, and consumed
// by one store of the head, each after the copy. Messages are counted by
// number, with stores that may be repeated (a consumer passing the last
// fragment of message k stores k+1 as the count got), never by
// increments that a death between two stores would leave half done. A producer killed in the
// middle of a message leaves fragments with no last: consumers drop them
// when the next message's first fragment comes, and skip a fragment that
// follows no first. The locks are taken over (ErrOwnerDied, ignored here)
// from a holder that died. So a dead producer loses only the message it
// was writing, and a dead consumer only the one it was reading.
type ring struct {
	hdr  []byte // ringHeader bytes of state words
	data []byte // the ring, a power of two long
	mask uint64
	what string // the object it belongs to, for errors: "Queue", "Pipe"
}

// The words of a ring's header, on three cache lines: the producers'
// (written by the holder of the put lock), the consumers' (by the holder
// of the get lock), and what both sides change rarely. Each side keeps a
// copy of the other's counter, read again only when its copy says it must
// wait, so that the lines cross between processors as little as they can.
const (
	rPutLock    = 0  // the put lock
	rDataSeq    = 4  // advanced with each record published: consumers wait on it
	rTail       = 8  // bytes published (uint64)
	rGetWaiters = 16 // consumers waiting for a record
	rSender     = 20 // the process that last put (a Pipe end's peer)
	rHeadSeen   = 24 // the producers' copy of rHead (uint64)
	rPut        = 32 // messages published: the next one's number (uint64)

	rGetLock    = 64
	rSpaceSeq   = 68 // advanced with each record consumed: producers wait on it
	rHead       = 72 // bytes consumed (uint64)
	rPutWaiters = 80 // producers waiting for room
	rTailSeen   = 88 // the consumers' copy of rTail (uint64)
	rGot        = 96 // 1 + the number of the last message consumers passed (uint64)

	rClosed     = 128 // 1 once closed
	rDoneSeq    = 132 // advanced by each TaskDone: Join waits on it
	rMaxLen     = 136
	rMaxMessage = 140
	rTasksDone  = 144 // TaskDone calls (uint64)

	ringHeader = 192
)

// Record flags.
const (
	recFirst = 1 << iota
	recLast
	recAbort // the message in progress was given up
)

// errRingClosed is returned by put and get on a closed ring.
var errRingClosed = errors.New("closed")

// ringSpin marks a wait past its spinning phase.
const ringSpin = 1

// ringSpinTime is how long a side busy-waits for the other before it
// sleeps on a futex: a ping-pong between two processes, or a producer a
// little slower than its consumer, then needs no system call. (Yielding
// instead would have the scheduler wake other threads, at a system call
// each.)
const ringSpinTime = 20 * time.Microsecond

// spinWait busy-waits, for at most ringSpinTime, for the word at off to
// change from seen.
func (r ring) spinWait(off int, seen uint32) {
	w := r.w(off)
	var deadline time.Time
	for i := 0; atomic.LoadUint32(w) == seen; i++ {
		if i%64 != 63 {
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(ringSpinTime)
		} else if time.Now().After(deadline) {
			return
		}
	}
}

func newRing(what string, hdr, data []byte) ring {
	return ring{hdr: hdr, data: data, mask: uint64(len(data) - 1), what: what}
}

func (r ring) w(off int) *uint32 { return shmem.Word(r.hdr, off) }

func (r ring) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.hdr[off])) }

func (r ring) closed() bool { return atomic.LoadUint32(r.w(rClosed)) == 1 }

// recHeader is the size of a record's header; records start at multiples
// of it, so that a header never wraps.
const recHeader = 16

func padRec(n int) uint64 { return uint64(n+recHeader-1) &^ (recHeader - 1) }

// copyIn writes b at ring position pos, wrapping.
func (r ring) copyIn(pos uint64, b []byte) {
	i := int(pos & r.mask)
	n := copy(r.data[i:], b)
	copy(r.data, b[n:])
}

// copyOut appends n bytes from ring position pos to dst, wrapping.
func (r ring) copyOut(dst []byte, pos uint64, n int) []byte {
	i := int(pos & r.mask)
	end := min(i+n, len(r.data))
	dst = append(dst, r.data[i:end]...)
	return append(dst, r.data[:n-(end-i)]...)
}

// await waits for the other side to move the word at off on from seen:
// busy-waiting the first time of a wait (spin 0), asleep on the futex
// after. It returns the spin to pass the next time of the same wait.
func (r ring) await(ctx context.Context, spin, off, waitersOff int, seen uint32) int {
	if spin < ringSpin {
		r.spinWait(off, seen)
	} else {
		r.wait(ctx, off, waitersOff, seen)
	}
	return ringSpin
}

// wait sleeps on the word at off while it is seen, counting itself among
// the waiters at waitersOff, for at most deadPoll or until ctx's deadline.
func (r ring) wait(ctx context.Context, off, waitersOff int, seen uint32) {
	d := pollFor(ctx)
	r.waitFor(off, waitersOff, seen, d)
}

// waitFor is wait, for at most d.
func (r ring) waitFor(off, waitersOff int, seen uint32, d time.Duration) {
	atomic.AddUint32(r.w(waitersOff), 1)
	shmem.Wait(r.w(off), seen, d)
	atomic.AddUint32(r.w(waitersOff), ^uint32(0))
}

// wake advances the word at off and wakes its waiters, if any.
func (r ring) wake(off, waitersOff int) {
	atomic.AddUint32(r.w(off), 1)
	if atomic.LoadUint32(r.w(waitersOff)) > 0 {
		shmem.Wake(r.w(off), 1<<30)
	}
}

// put writes message b. It waits for room (and, with a length limit, for
// the count to drop under it) until ctx ends or the ring is closed; peerGone,
// if not nil, is asked while it waits whether anyone can still read.
func (r ring) put(ctx context.Context, b []byte, peerGone func() error) error {
	if r.closed() {
		return errRingClosed
	}
	if err := lockWord(ctx, r.w(rPutLock)); err != nil && !isOwnerDied(err) {
		return err
	}
	defer unlockWord(r.w(rPutLock))
	if r.closed() { // closed while this one waited for the lock
		return errRingClosed
	}
	if s := r.w(rSender); atomic.LoadUint32(s) != myPID {
		atomic.StoreUint32(s, myPID)
	}
	capacity := uint64(len(r.data))
	tail := atomic.LoadUint64(r.u64(rTail))
	head := atomic.LoadUint64(r.u64(rHeadSeen))
	if err := r.checkSpan(head, tail); err != nil {
		return err
	}
	seq := atomic.LoadUint64(r.u64(rPut))
	small := recHeader+padRec(len(b)) <= capacity/2
	maxLen := int64(atomic.LoadUint32(r.w(rMaxLen)))
	first := true
	for spin := 0; ; {
		// A fragment waits for a quarter of the ring, not to trickle
		// through in records of a few bytes.
		hasRoom := func() bool {
			free := capacity - (tail - head)
			if first && maxLen > 0 && r.len() >= maxLen {
				return false
			}
			return free >= recHeader+padRec(len(b)) || !small && free >= capacity/4
		}
		if !hasRoom() {
			seen := atomic.LoadUint32(r.w(rSpaceSeq))
			head = atomic.LoadUint64(r.u64(rHead))
			if err := r.checkSpan(head, tail); err != nil {
				return err
			}
			atomic.StoreUint64(r.u64(rHeadSeen), head)
			if hasRoom() {
				continue
			}
			free := capacity - (tail - head)
			err := ctx.Err()
			if err == nil && r.closed() {
				err = errRingClosed
			}
			if err == nil && peerGone != nil && spin >= ringSpin {
				err = peerGone()
			}
			if err != nil {
				if !first && free >= recHeader { // tell consumers to drop what they have
					r.record(tail, recAbort, seq, nil)
					tail += recHeader
					atomic.StoreUint64(r.u64(rTail), tail)
					r.wake(rDataSeq, rGetWaiters)
				}
				if err == errRingClosed || ctx.Err() == nil {
					return err
				}
				return context.Cause(ctx)
			}
			spin = r.await(ctx, spin, rSpaceSeq, rPutWaiters, seen)
			continue
		}
		spin = 0
		free := capacity - (tail - head)
		n := min(len(b), int((free-recHeader)&^(recHeader-1)))
		flags := uint32(0)
		if first {
			flags |= recFirst
		}
		if n == len(b) {
			flags |= recLast
		}
		r.record(tail, flags, seq, b[:n])
		tail += recHeader + padRec(n)
		atomic.StoreUint64(r.u64(rTail), tail)
		if flags&recLast != 0 {
			// Counted once published: a death in between leaves it
			// uncounted, and the next message takes its number.
			atomic.StoreUint64(r.u64(rPut), seq+1)
		}
		r.wake(rDataSeq, rGetWaiters)
		if flags&recLast != 0 {
			return nil
		}
		b, first = b[n:], false
	}
}

// record writes a record of message seq at tail, not yet published.
func (r ring) record(tail uint64, flags uint32, seq uint64, payload []byte) {
	i := tail & r.mask
	*(*uint32)(unsafe.Pointer(&r.data[i])) = uint32(len(payload))
	*(*uint32)(unsafe.Pointer(&r.data[i+4])) = flags
	*(*uint64)(unsafe.Pointer(&r.data[i+8])) = seq
	r.copyIn(tail+recHeader, payload)
}

// get reads the next message into buf[:0]. It waits until ctx ends (then
// it returns ctx's cause) or the ring is closed and empty
// (errRingClosed); peerGone, if not nil, is asked while it waits whether
// anyone can still write. A message in progress is waited for while its
// producer holds the put lock and lives, whatever ctx.
func (r ring) get(ctx context.Context, buf []byte, peerGone func() error) ([]byte, error) {
	if err := lockWord(ctx, r.w(rGetLock)); err != nil && !isOwnerDied(err) {
		return nil, err
	}
	defer unlockWord(r.w(rGetLock))
	head := atomic.LoadUint64(r.u64(rHead))
	tail := atomic.LoadUint64(r.u64(rTailSeen))
	msg, in := buf[:0], false
	for spin := 0; ; {
		if head == tail {
			seen := atomic.LoadUint32(r.w(rDataSeq))
			tail = atomic.LoadUint64(r.u64(rTail))
			atomic.StoreUint64(r.u64(rTailSeen), tail)
			if head != tail {
				continue
			}
			if in && spin >= ringSpin && !r.producing() {
				// Its producer publishes before it unlocks: with the lock
				// free (or its holder dead) and still nothing new, it gave
				// up or died.
				if atomic.LoadUint64(r.u64(rTail)) != head {
					tail = head
					continue
				}
				msg, in = msg[:0], false
			}
			var err error
			if !in { // else the rest of this message is coming
				switch {
				case r.closed() && !r.producing():
					err = errRingClosed
				case ctx.Err() != nil:
					err = context.Cause(ctx)
				case peerGone != nil && spin >= ringSpin:
					err = peerGone()
				}
			}
			if err != nil {
				// What was published before the close (or the peer's end)
				// is read first.
				if atomic.LoadUint64(r.u64(rTail)) != head {
					tail = head
					continue
				}
				return nil, err
			}
			spin = r.await(ctx, spin, rDataSeq, rGetWaiters, seen)
			continue
		}
		spin = 0
		if err := r.checkSpan(head, tail); err != nil {
			return nil, err
		}
		i := head & r.mask
		n32 := *(*uint32)(unsafe.Pointer(&r.data[i]))
		flags := *(*uint32)(unsafe.Pointer(&r.data[i+4]))
		seq := *(*uint64)(unsafe.Pointer(&r.data[i+8]))
		had := 0
		if in && flags&recFirst == 0 {
			had = len(msg)
		}
		if err := r.checkRecord(head, tail, n32, flags, had); err != nil {
			return nil, err
		}
		n := int(n32)
		switch {
		case flags&recAbort != 0:
			msg, in = msg[:0], false
		case flags&recFirst != 0:
			if flags&recLast != 0 && cap(msg) < n {
				msg = make([]byte, 0, n)
			}
			msg, in = r.copyOut(msg[:0], head+recHeader, n), true
		case in:
			msg = r.copyOut(msg, head+recHeader, n)
		}
		head += recHeader + padRec(n)
		done := in && flags&recLast != 0
		if flags&(recLast|recAbort) == recLast {
			// Passed, read or skipped (its reader died): counted either way.
			atomic.StoreUint64(r.u64(rGot), seq+1)
		}
		atomic.StoreUint64(r.u64(rHead), head)
		r.wake(rSpaceSeq, rPutWaiters)
		if done {
			return msg, nil
		}
	}
}

// producing reports whether a live process holds the put lock.
func (r ring) producing() bool {
	owner := atomic.LoadUint32(r.w(rPutLock)) &^ waitersBit
	return owner != 0 && (owner == myPID || shmem.Alive(int(owner)))
}

// close closes the ring: puts fail, and gets fail once it is empty. Every
// waiter is woken to see it; a put in progress finishes (or, waiting for
// room, gives up) before close returns.
func (r ring) close() {
	atomic.StoreUint32(r.w(rClosed), 1)
	r.wake(rDataSeq, rGetWaiters)
	r.wake(rSpaceSeq, rPutWaiters)
	lockWord(context.Background(), r.w(rPutLock))
	unlockWord(r.w(rPutLock))
	r.wake(rDataSeq, rGetWaiters)
}

// puts returns how many messages were put: those counted by producers, or
// more if consumers have passed more (a producer counts a message just
// after it publishes it, and may die in between).
func (r ring) puts() uint64 {
	got := atomic.LoadUint64(r.u64(rGot))
	return max(atomic.LoadUint64(r.u64(rPut)), got)
}

// len returns how many whole messages the ring holds. After a death it
// may be one off for a moment, never below 0.
func (r ring) len() int64 {
	got := atomic.LoadUint64(r.u64(rGot))
	return max(int64(atomic.LoadUint64(r.u64(rPut))-got), 0)
}

// empty reports whether no record waits to be read.
func (r ring) empty() bool {
	return atomic.LoadUint64(r.u64(rHead)) == atomic.LoadUint64(r.u64(rTail))
}
