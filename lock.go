package mp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/shmem"
)

// Lock is a mutual exclusion lock shared by processes, as Python's
// multiprocessing.Lock: a word in shared memory that holds its owner's
// process ID, with futex waits. Pass it to other processes as (a field of)
// the argument of Spawn, of a pool call or of Bind, like a [SharedMemory].
//
// A Lock is owned by a process, not a goroutine: within one process it
// excludes goroutines too, and any goroutine of the owning process may
// unlock it. It is not recursive.
//
// If the process that holds it dies, the next Lock call takes it over and
// returns an error matching [ErrOwnerDied], with the lock held: the state
// it guards may be half updated, and the caller decides. A waiter notices a
// holder's death within 50ms. The owner is known by its process ID only:
// if the dead holder's ID has been reused by another process by the time
// someone next wants the lock, the lock stays held until that process
// ends too.
//
// It is not a sync.Locker: acquiring it can fail.
//
// Cost: Lock and Unlock of a free lock are a compare-and-swap each, with
// no system call; a waiter spins briefly, then sleeps on a futex (see
// BenchmarkLock in bench/, and bench/RESULTS.md).
type Lock struct{ object }

// waitersBit marks a lock word that processes wait on; the rest is the
// owner's PID (Linux PIDs are below 2^22).
const waitersBit = 1 << 31

// deadPoll is how often a waiter checks that the lock's owner lives.
const deadPoll = 50 * time.Millisecond

// NewLock makes a Lock, unlocked.
func NewLock() (*Lock, error) { return newObject[Lock](kindLock, 64) }

// UnmarshalCBOR decodes a lock passed by the parent, in a worker.
func (l *Lock) UnmarshalCBOR(data []byte) error { return l.unmarshal(data, kindLock) }

func (l *Lock) word() *uint32 { return shmem.Word(l.h.mem, 0) }

// Lock acquires the lock, waiting while another holds it, until ctx ends
// (then it returns ctx's cause, without the lock). If its holder died, it
// returns an error matching ErrOwnerDied, and the caller holds the lock.
func (l *Lock) Lock(ctx context.Context) error {
	defer runtime.KeepAlive(l) // see object
	return l.lock(ctx, "Lock")
}

// TryLock acquires the lock if it is free (or its holder died: then the
// error matches ErrOwnerDied) and reports whether it did.
func (l *Lock) TryLock() (bool, error) {
	if l.own.closed() {
		return false, errClosed("Lock")
	}
	return tryLockWord(l.word(), false, true)
}

// Unlock releases the lock. It returns an error if this process does not
// hold it.
func (l *Lock) Unlock() error { return l.unlock("Lock") }

// tryLockWord takes the lock word if it is free, or, with checkOwner, if
// its owner is dead. contended marks the word as waited on, for a caller
// that has waited.
func tryLockWord(w *uint32, contended, checkOwner bool) (bool, error) {
	me := myPID
	for {
		v := atomic.LoadUint32(w)
		owner := v &^ waitersBit
		mine := me
		if contended || v&waitersBit != 0 {
			mine |= waitersBit
		}
		switch {
		case owner == 0:
			if atomic.CompareAndSwapUint32(w, v, mine) {
				return true, nil
			}
		case checkOwner && owner != me && !shmem.Alive(int(owner)):
			if atomic.CompareAndSwapUint32(w, v, mine) {
				return true, fmt.Errorf("%w: process %d died holding the lock, which is now this process's", ErrOwnerDied, owner)
			}
		default:
			return false, nil
		}
	}
}

// pollFor is how long a wait on a shared word sleeps before it looks
// again: deadPoll, or less if ctx's deadline comes first (at least 1ms).
func pollFor(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return min(deadPoll, max(time.Until(dl), time.Millisecond))
	}
	return deadPoll
}

// myPID is this process's ID, the owner mark of the locks it holds (read
// once: getpid is a system call, and processes here never fork).
var myPID = uint32(os.Getpid())

// spins is how many times a waiter looks again, yielding in between,
// before it sleeps: a lock held for a moment is taken without a system call.
const spins = 8

// spin tries take, and spins times more while it fails, yielding in
// between; it returns take's last outcome. The start of every wait on a
// lock or a semaphore: the caller sleeps on a futex only if spin failed.
func spin(take func() (bool, error)) (bool, error) {
	for i := 0; ; i++ {
		if ok, err := take(); ok || i == spins {
			return ok, err
		}
		runtime.Gosched()
	}
}

func lockWord(ctx context.Context, w *uint32) error {
	// The owner's life is checked only once a wait has lasted deadPoll:
	// reading /proc on every try would cost more than the lock.
	contended := false
	ok, err := spin(func() (bool, error) { return tryLockWord(w, false, false) })
	for ; !ok; ok, err = tryLockWord(w, contended, false) {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		v := atomic.LoadUint32(w)
		if v&^waitersBit == 0 {
			continue
		}
		if v&waitersBit == 0 && !atomic.CompareAndSwapUint32(w, v, v|waitersBit) {
			continue
		}
		contended = true
		d := pollFor(ctx)
		start := time.Now()
		shmem.Wait(w, v|waitersBit, d)
		if time.Since(start) >= d && atomic.LoadUint32(w) == v|waitersBit {
			// No change for a whole wait: is its owner still there?
			if ok, err := tryLockWord(w, true, true); ok {
				return err
			}
		}
	}
	return err
}

func unlockWord(w *uint32) error {
	me := myPID
	for {
		v := atomic.LoadUint32(w)
		if owner := v &^ waitersBit; owner != me {
			if owner == 0 {
				return fmt.Errorf("mp: Unlock of an unlocked Lock")
			}
			return fmt.Errorf("mp: Unlock of a Lock held by process %d, not this one", owner)
		}
		if atomic.CompareAndSwapUint32(w, v, 0) {
			if v&waitersBit != 0 {
				shmem.Wake(w, 1)
			}
			return nil
		}
	}
}

func isOwnerDied(err error) bool { return errors.Is(err, ErrOwnerDied) }

// errClosed is the error of a shared object used after Close.
func errClosed(kind string) error { return fmt.Errorf("mp: %s used after Close", kind) }
