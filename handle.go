package mp

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp/internal/shmem"
	"github.com/go-mp/mp/internal/wire"
)

// A handle is the part of a shared object (a SharedMemory, a Lock, a
// Value) that crosses to other processes: a shared memory descriptor,
// known everywhere by the ID the process that made it gave it.
//
// Passing one: the object is a field of a task's argument (or is it). The
// argument is encoded with the handle's ID in it (handleTag), and the
// handles met while encoding are recorded with the unit. Before the task
// frame goes to a worker, its descriptors that the worker has not had yet
// go in a KindFDs frame, as SCM_RIGHTS; the worker keeps each, mapped once,
// for its life. So passing the same handle in many tasks costs a lookup per
// task, and no descriptor accumulates anywhere.
//
// Lifetime: the maker holds one reference until it calls Close, and every
// unit (and Spawn, and pool Init) that carries the handle holds one until
// it is done with it, so the descriptor stays open while it may still be
// sent. The memory itself lives until the last process that has it mapped
// or open is gone, however it ends: there is nothing to clean up after a
// crash.
type handle struct {
	id   uint64
	kind handleKind
	size int
	name string // a named SharedMemory's name
	mem  []byte // mapped; in a worker, while objects decoded from it are reachable

	mu        sync.Mutex
	fd        int // -1 once the last reference is gone
	refs      int
	sinks     map[handleSink]bool // pool workers it was sent to, told to drop it at the end
	forgotten bool                // in a worker: its parent closed it

	rlock    *rlockState  // an RLock's state in this process
	semEntry atomic.Int32 // a Semaphore's table entry of this process, plus one
}

type handleKind uint8

const (
	kindSharedMemory handleKind = 1 + iota
	kindLock
	kindValue
	kindSemaphore
	kindEvent
	kindRLock
	kindCondition
	kindBarrier
	kindArray
	kindQueue
	kindPipe
)

func (k handleKind) String() string {
	switch k {
	case kindSharedMemory:
		return "SharedMemory"
	case kindLock:
		return "Lock"
	case kindValue:
		return "Value"
	case kindSemaphore:
		return "Semaphore"
	case kindEvent:
		return "Event"
	case kindRLock:
		return "RLock"
	case kindCondition:
		return "Condition"
	case kindBarrier:
		return "Barrier"
	case kindArray:
		return "Array"
	case kindQueue:
		return "Queue"
	case kindPipe:
		return "Pipe end"
	}
	return fmt.Sprintf("handle kind %d", uint8(k))
}

// handleTag is the CBOR tag of an encoded handle: [kind, id, size].
const handleTag = 0x6d70 // "mp"

type handleWire struct {
	_    struct{} `cbor:",toarray"`
	Kind handleKind
	ID   uint64
	Size int
	Name string // a named SharedMemory's
	Aux  int    // a Pipe end's number
}

var handleSeq atomic.Uint64

// newHandleID returns an ID no other process's handle has: a worker may
// make shared objects of its own, and pass them on with those it received.
func newHandleID() uint64 { return uint64(os.Getpid())<<32 | handleSeq.Add(1) }

// newHandle makes a shared memory object of size bytes and maps it.
func newHandle(kind handleKind, size int) (*handle, error) {
	fd, err := shmem.Create(size)
	if err != nil {
		return nil, err
	}
	return mapHandle(kind, size, fd, newHandleID())
}

// mapHandle maps fd as handle id; it closes fd if it cannot.
func mapHandle(kind handleKind, size, fd int, id uint64) (*handle, error) {
	h, err := mapFD(kind, size, fd, id)
	if err != nil {
		shmem.Close(fd)
	}
	return h, err
}

// mapFD maps fd as handle id.
func mapFD(kind handleKind, size, fd int, id uint64) (*handle, error) {
	mem, err := shmem.Map(fd, size)
	if err != nil {
		return nil, err
	}
	h := &handle{id: id, kind: kind, size: size, mem: mem, fd: fd, refs: 1}
	if kind == kindRLock {
		h.rlock = &rlockState{acquiring: make(chan struct{}, 1)}
	}
	return h, nil
}

// acquire takes a reference, if the handle is still open.
func (h *handle) acquire() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fd < 0 {
		return false
	}
	h.refs++
	return true
}

// release drops a reference; the last one unmaps and closes it.
func (h *handle) release() {
	h.mu.Lock()
	var tell map[handleSink]bool
	if h.refs--; h.refs == 0 && h.fd >= 0 {
		shmem.Unmap(h.mem)
		shmem.Close(h.fd)
		h.fd = -1
		tell, h.sinks = h.sinks, nil
		if h.forgotten {
			lingering.Add(-1)
		}
	}
	h.mu.Unlock()
	// Workers keep what they were sent for their life: tell those that
	// have it to drop it, or a program that makes a new object per task
	// would fill them with mappings.
	for s := range tell {
		s.forget(h.id)
	}
}

// A handleSink is where a handle's descriptor was sent for good: a pool's
// worker place (slot), whose worker is told to drop the handle once its
// last reference here is gone.
type handleSink interface {
	forget(id uint64)
}

// sentTo records that the worker of s has the handle.
func (h *handle) sentTo(s handleSink) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sinks == nil {
		h.sinks = make(map[handleSink]bool)
	}
	h.sinks[s] = true
}

// descriptor returns the handle's descriptor; the caller holds a reference.
func (h *handle) descriptor() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fd
}

func releaseAll(hs []*handle) {
	for _, h := range hs {
		h.release()
	}
}

// encoding collects the handles met while an argument is encoded. Encoding
// arguments that may hold handles is serialized (see encodeArgs), so one
// slot will do; a handle encoded anywhere else is refused.
var encoding struct {
	mu  sync.Mutex
	cur atomic.Pointer[[]*handle]
}

// encodeArgs encodes v; if its type may hold handles (withHandles), it
// returns the handles met, each with a reference taken for the caller.
func encodeArgs[T any](v T, withHandles bool) ([]byte, []*handle, error) {
	if !withHandles {
		b, err := wire.Marshal(v)
		return b, nil, err
	}
	encoding.mu.Lock()
	defer encoding.mu.Unlock()
	var met []*handle
	encoding.cur.Store(&met)
	b, err := wire.Marshal(v)
	encoding.cur.Store(nil)
	var held []*handle
	for _, h := range met {
		if !h.acquire() {
			releaseAll(held)
			return nil, nil, fmt.Errorf("mp: the %v passed is closed", h.kind)
		}
		held = append(held, h)
	}
	if err != nil {
		releaseAll(held)
		return nil, nil, err
	}
	return b, held, nil
}

// marshalHandle is the MarshalCBOR of every shared object.
func marshalHandle(h *handle) ([]byte, error) { return marshalHandleAux(h, 0) }

// marshalHandleAux encodes h with a number of the object's own (aux).
func marshalHandleAux(h *handle, aux int) ([]byte, error) {
	cur := encoding.cur.Load()
	switch {
	case cur == nil && isWorker.Load():
		return nil, fmt.Errorf("mp: a task cannot return a %v: pass it in the argument instead", h.kind)
	case cur == nil:
		return nil, fmt.Errorf("mp: a %v can only be encoded by mp, in the argument of Spawn, a pool call or Bind", h.kind)
	}
	*cur = append(*cur, h)
	return wire.MarshalAny(cbor.Tag{Number: handleTag, Content: handleWire{Kind: h.kind, ID: h.id, Size: h.size, Name: h.name, Aux: aux}})
}

// unmarshalHandle is the UnmarshalCBOR of every shared object: in a
// worker, the handle the parent sent before the task.
func unmarshalHandle(data []byte, kind handleKind) (*handle, error) {
	h, _, err := unmarshalHandleWire(data, kind)
	return h, err
}

// unmarshalHandleWire is unmarshalHandle, with what was encoded.
func unmarshalHandleWire(data []byte, kind handleKind) (*handle, handleWire, error) {
	var tag cbor.RawTag
	var w handleWire
	if err := wire.UnmarshalAny(data, &tag); err != nil {
		return nil, w, err
	}
	if tag.Number != handleTag || wire.UnmarshalAny(tag.Content, &w) != nil || w.Kind != kind {
		return nil, w, fmt.Errorf("%w: not a %v", wire.ErrMalformed, kind)
	}
	h, err := received.get(w.ID, w.Kind, w.Size)
	return h, w, err
}

// received holds, in a worker, the handles its parent sent, by ID.
var received receivedHandles

type receivedHandles struct {
	mu   sync.Mutex
	fds  map[uint64]int
	byID map[uint64]*handle
}

// forgetHandles drops, in a worker, handles the parent closed
// (worker.Config.OnForget): the table's reference goes. The memory stays
// mapped while objects decoded from it are reachable (a task may have kept
// one, or passed it on), each holding a reference that a cleanup releases
// once the garbage collector finds it unreachable.
func forgetHandles(ids []uint64) {
	received.mu.Lock()
	var drop []*handle
	for _, id := range ids {
		if h := received.byID[id]; h != nil {
			drop = append(drop, h)
			delete(received.byID, id)
		}
		if fd, ok := received.fds[id]; ok {
			shmem.Close(fd) // received, never mapped
			delete(received.fds, id)
		}
	}
	received.mu.Unlock()
	for _, h := range drop {
		h.mu.Lock()
		h.forgotten = true
		h.mu.Unlock()
		lingering.Add(1)
		h.release()
	}
	// The objects decoded from them are garbage once their tasks are done,
	// but their cleanups wait for a collection, which a worker that
	// allocates little may not have for a long time: have one, rather
	// than keep many blocks mapped.
	if lingering.Load() >= lingerMax {
		runtime.GC()
	}
}

// lingering counts, in a worker, the handles its parent closed that are
// still mapped, waiting for the objects decoded from them to be collected.
var lingering atomic.Int64

const lingerMax = 4

// decoded gives obj, decoded in a worker, a reference to h for as long as
// obj is reachable.
func decoded[O any](obj *O, h *handle) {
	if h.acquire() {
		runtime.AddCleanup(obj, (*handle).release, h)
	}
}

// receiveFDs keeps descriptors the parent sent (worker.Config.OnFDs).
func receiveFDs(ids []uint64, fds []int) {
	received.mu.Lock()
	defer received.mu.Unlock()
	if received.fds == nil {
		received.fds = make(map[uint64]int)
	}
	for i, id := range ids {
		if old, dup := received.fds[id]; dup {
			shmem.Close(old)
		}
		received.fds[id] = fds[i]
	}
}

// get returns the received handle id, mapped (once) to size bytes. A
// handle that does not fit its object is an error, and leaves the
// descriptor for a right one (see checkObjectSize).
func (r *receivedHandles) get(id uint64, kind handleKind, size int) (*handle, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.byID[id]; h != nil {
		if err := h.checkSame(kind, size); err != nil {
			return nil, err
		}
		return h, nil
	}
	if err := checkObjectSize(kind, size); err != nil {
		return nil, err
	}
	fd, ok := r.fds[id]
	if !ok {
		if !isWorker.Load() {
			return nil, fmt.Errorf("mp: a %v can only be decoded in a process it was sent to", kind)
		}
		return nil, fmt.Errorf("%w: %v %d arrived without its descriptor", wire.ErrMalformed, kind, id)
	}
	if err := checkFits(kind, id, fd, size); err != nil {
		return nil, err
	}
	h, err := mapFD(kind, size, fd, id)
	if err != nil {
		return nil, fmt.Errorf("mp: %v %d: %w", kind, id, err)
	}
	delete(r.fds, id) // the handle owns it now
	if r.byID == nil {
		r.byID = make(map[uint64]*handle)
	}
	r.byID[id] = h // kept for the worker's life: the next task finds it mapped
	return h, nil
}

// sharedObject is implemented by the pointer types of shared objects.
type sharedObject interface{ mpHandle() *handle }

var sharedObjectType = reflect.TypeFor[sharedObject]()

// holdsHandles reports whether values of type t may hold shared objects.
func holdsHandles(t reflect.Type) bool { return holds(t, map[reflect.Type]bool{}) }

func holds(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	if t.Implements(sharedObjectType) {
		return true
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holds(t.Elem(), seen)
	case reflect.Map:
		return holds(t.Key(), seen) || holds(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if holds(t.Field(i).Type, seen) {
				return true
			}
		}
	case reflect.Interface:
		return t.NumMethod() == 0 // an any may hold one
	}
	return false
}

// sendHandles sends wc's worker the descriptors of hs it has not had yet,
// before the frame that needs them, and records them as sent to s, if s is
// not nil (a worker that lives on, and must drop them when they close).
// The caller holds what serializes writes to wc, and a reference to each
// handle.
func (wc *workerConn) sendHandles(hs []*handle, s handleSink) error {
	var ids []uint64
	var fds []int
	for _, h := range hs {
		if wc.sentHandles[h.id] || slices.Contains(ids, h.id) {
			continue
		}
		ids, fds = append(ids, h.id), append(fds, h.descriptor())
	}
	for len(ids) > 0 {
		n := min(len(ids), wire.MaxFDs)
		if err := wc.w.Flush(); err != nil {
			return err
		}
		if err := wire.SendFDs(wc.child.Conn, ids[:n], fds[:n]); err != nil {
			return err
		}
		if wc.sentHandles == nil {
			wc.sentHandles = make(map[uint64]bool)
		}
		for _, id := range ids[:n] {
			wc.sentHandles[id] = true
		}
		if s != nil {
			for _, h := range hs {
				if slices.Contains(ids[:n], h.id) {
					h.sentTo(s)
				}
			}
		}
		ids, fds = ids[n:], fds[n:]
	}
	return nil
}

// owner is the reference the maker of a lock, Value, Semaphore or Event
// holds: given up by Close, or by a cleanup once the object is unreachable,
// so that one dropped without Close is not kept for the program's life.
// (Not for a SharedMemory: its Bytes may outlive it, and must stay mapped.)
type owner struct {
	h    *handle
	done atomic.Bool
}

func (o *owner) close() {
	if o.done.CompareAndSwap(false, true) {
		o.h.release()
	}
}

func (o *owner) closed() bool { return o != nil && o.done.Load() }

// own makes the owner of h for obj, the object that wraps it.
func own[O any](obj *O, h *handle) *owner {
	o := &owner{h: h}
	runtime.AddCleanup(obj, (*owner).close, o)
	return o
}

// object is what the shared objects but SharedMemory are made of: their
// handle, their maker's reference, and how they are passed.
//
// Keeping the memory mapped while it is used: the maker's reference goes
// when the object becomes unreachable (see own), and with the last
// reference the block is unmapped. A method that waits holds only
// pointers into the block (a futex word, a ring's slices), which the
// garbage collector does not see: once it no longer uses its receiver,
// the object may be collected and the block unmapped under it (when
// nothing else references it: a goroutine waiting in Put on a Queue its
// caller has dropped), and the wait faults. So every exported method of a
// shared object that can wait (for a futex, a lock, a ring) begins with
//
//	defer runtime.KeepAlive(x) // see object
//
// on its receiver x, which keeps the object, and so the mapping, until it
// returns. TestKeepAliveEveryMethod checks that each exported method of a
// type that embeds object does, or is listed there as one that does not
// wait: a method added is one or the other. TestGCWhileWaiting collects
// garbage under each waiting method.
type object struct {
	h   *handle
	own *owner // nil in a worker, which received it
}

// Close releases this process's hold on the shared object, once the calls
// that pass it are done with it: the object lives on in the other
// processes that hold it, and is freed when the last of them lets go or
// ends. Close is idempotent; the object must not be used after it. In a
// worker that received the object, Close does nothing.
func (o *object) Close() error {
	if o.own != nil {
		o.own.close()
	}
	return nil
}

// MarshalCBOR encodes a reference to the shared object, not its contents,
// so that mp can pass it to another process in a task's argument (see
// [SharedMemory]). Programs do not call it.
func (o *object) MarshalCBOR() ([]byte, error) { return marshalHandle(o.h) }

// unmarshal decodes, in a worker, an object of kind that the parent sent.
func (o *object) unmarshal(data []byte, kind handleKind) error {
	h, err := unmarshalHandle(data, kind)
	if err != nil {
		return err
	}
	o.h = h
	decoded(o, h)
	return nil
}

func (o *object) mpHandle() *handle { return o.h }

// newObject makes a shared object of kind whose segment has size bytes,
// owned by this process.
func newObject[O any, P interface {
	*O
	base() *object
}](kind handleKind, size int) (P, error) {
	if err := shmem.Supported(); err != nil {
		return nil, err
	}
	h, err := newHandle(kind, size)
	if err != nil {
		return nil, fmt.Errorf("mp: New%v: %w", kind, err)
	}
	p := P(new(O))
	b := p.base()
	b.h = h
	b.own = own((*O)(p), h)
	return p, nil
}

func (o *object) base() *object { return o }
