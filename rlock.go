package mp

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/go-mp/mp/internal/shmem"
)

// RLock is a reentrant lock shared by processes, as Python's
// multiprocessing.RLock: the process that holds it may lock it again, and
// it is free once every Lock has had its Unlock. Pass it like a
// [SharedMemory].
//
// An RLock is held by a process, not a goroutine (Go's goroutines have no
// identity to hold it by): while a process holds it, any of its goroutines
// may lock it again, and unlock it. To exclude the goroutines of one
// process from each other, use a sync.Mutex as well.
//
// If the process that holds it dies, however many times it had locked it,
// the next Lock takes it over, once, and returns an error matching
// [ErrOwnerDied], as a [Lock] does.
//
// Cost: as a Lock's, to take it; locking it again in the process that
// holds it takes no system call and no atomic operation on shared memory.
type RLock struct{ object }

// rlockState is an RLock's state in one process: how many times it holds
// it, and a gate that lets one of its goroutines at a time wait for it.
type rlockState struct {
	acquiring chan struct{}
	mu        sync.Mutex
	count     int
}

// NewRLock makes an RLock, unlocked.
func NewRLock() (*RLock, error) { return newObject[RLock](kindRLock, 64) }

// UnmarshalCBOR decodes an RLock passed by the parent, in a worker.
func (r *RLock) UnmarshalCBOR(data []byte) error { return r.unmarshal(data, kindRLock) }

// again counts one more Lock if this process holds the lock.
func (st *rlockState) again() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.count > 0 {
		st.count++
		return true
	}
	return false
}

// Lock acquires the lock, or counts one more if this process holds it,
// waiting while another process holds it, until ctx ends (then it returns
// ctx's cause, without the lock). If its holder died, it returns an error
// matching ErrOwnerDied, and the caller holds the lock, once.
func (r *RLock) Lock(ctx context.Context) error {
	defer runtime.KeepAlive(r) // see object
	if ctx == nil {
		return nilContext("RLock.Lock")
	}
	if r.own.closed() {
		return errClosed("RLock")
	}
	st := r.h.rlock
	if st.again() {
		return nil
	}
	select {
	case st.acquiring <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-st.acquiring }()
	if st.again() { // another goroutine took it while this one waited
		return nil
	}
	err := lockWord(ctx, shmem.Word(r.h.mem, 0))
	if err != nil && !isOwnerDied(err) {
		return err
	}
	st.mu.Lock()
	st.count = 1
	st.mu.Unlock()
	return err
}

// TryLock acquires the lock, or counts one more, if it is free or this
// process holds it (or its holder died: then the error matches
// ErrOwnerDied), and reports whether it did.
func (r *RLock) TryLock() (bool, error) {
	if r.own.closed() {
		return false, errClosed("RLock")
	}
	st := r.h.rlock
	if st.again() {
		return true, nil
	}
	select {
	case st.acquiring <- struct{}{}:
	default:
		return false, nil // a goroutine of this process waits for it
	}
	defer func() { <-st.acquiring }()
	if st.again() {
		return true, nil
	}
	ok, err := tryLockWord(shmem.Word(r.h.mem, 0), false, true)
	if ok {
		st.mu.Lock()
		st.count = 1
		st.mu.Unlock()
	}
	return ok, err
}

// Unlock undoes one Lock; the last one releases the lock. It returns an
// error if this process does not hold it.
func (r *RLock) Unlock() error {
	if r.own.closed() {
		return errClosed("RLock")
	}
	st := r.h.rlock
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.count == 0 {
		switch owner := atomic.LoadUint32(shmem.Word(r.h.mem, 0)) &^ waitersBit; owner {
		case 0:
			return fmt.Errorf("mp: Unlock of an unlocked RLock")
		case myPID: // being taken by another goroutine, not yet held
			return fmt.Errorf("mp: Unlock of an RLock this process does not hold")
		default:
			return fmt.Errorf("mp: Unlock of an RLock held by process %d, not this one", owner)
		}
	}
	if st.count--; st.count > 0 {
		return nil
	}
	return unlockWord(shmem.Word(r.h.mem, 0))
}
