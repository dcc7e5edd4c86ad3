package mp

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp/internal/shmem"
	"github.com/go-mp/mp/internal/wire"
)

// Handles are checked against what they name (issue 18): a handle of the
// wrong kind, or of a size its object does not have, is an error, never a
// panic or a mapping past the object's end (a SIGBUS when touched).

// testHandleID numbers the handles these tests pass to themselves, apart
// from those of newHandleID.
var testHandleID atomic.Uint64

// receiveTestFD makes an object of size bytes and receives its descriptor
// as a worker does, under a new ID.
func receiveTestFD(t testing.TB, size int) uint64 {
	t.Helper()
	fd, err := shmem.Create(size)
	if err != nil {
		t.Fatal(err)
	}
	id := 1<<63 | testHandleID.Add(1)
	receiveFDs([]uint64{id}, []int{fd})
	t.Cleanup(func() { forgetHandles([]uint64{id}) })
	return id
}

func encodeTestHandle(t testing.TB, w handleWire) []byte {
	t.Helper()
	b, err := wire.MarshalAny(cbor.Tag{Number: handleTag, Content: w})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeTestObject decodes data as the object of kind, and uses it.
func decodeTestObject(kind handleKind, data []byte) error {
	switch kind {
	case kindQueue:
		var q Queue[int]
		if err := q.UnmarshalCBOR(data); err != nil {
			return err
		}
		for i := range 20 {
			q.TryPut(i)
		}
		q.TryGet()
	case kindPipe:
		var c Conn[int]
		if err := c.UnmarshalCBOR(data); err != nil {
			return err
		}
		looked, look := context.WithCancel(context.Background())
		look() // an ended ctx: Poll only looks
		c.Poll(looked)
	case kindArray:
		var a Array[int64]
		if err := a.UnmarshalCBOR(data); err != nil {
			return err
		}
		for i := range a.Slice() {
			a.Slice()[i] = 1
		}
	case kindLock:
		var l Lock
		if err := l.UnmarshalCBOR(data); err != nil {
			return err
		}
		if ok, _ := l.TryLock(); ok {
			l.Unlock()
		}
	case kindSharedMemory:
		var m SharedMemory
		if err := m.UnmarshalCBOR(data); err != nil {
			return err
		}
		if len(m.Bytes()) != m.Size() {
			panic("Bytes and Size disagree")
		}
		touch(m.Bytes())
	default:
		var o object
		if err := o.unmarshal(data, kind); err != nil {
			return err
		}
		touch(o.h.mem)
	}
	return nil
}

// touch writes to every page of b, and its last byte: a SIGBUS if b goes
// past the end of its object.
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i]++
	}
	if len(b) > 0 {
		b[len(b)-1]++
	}
}

func TestHandleWrongKindOrSize(t *testing.T) {
	const queueSize = queueHeader + 4096
	tests := []struct {
		name    string
		object  int        // the object's size
		first   handleWire // decoded first, if its Kind is set: it must work
		handle  handleWire // then this: it must fail
		as      handleKind // as what it is decoded
		retried handleWire // then this, if its Kind is set: it must work
	}{
		{name: "larger than its object", object: 64,
			handle: handleWire{Kind: kindSharedMemory, Size: 1 << 20}, as: kindSharedMemory,
			retried: handleWire{Kind: kindSharedMemory, Size: 64}},
		{name: "a Queue larger than its object", object: 64,
			handle: handleWire{Kind: kindQueue, Size: queueSize}, as: kindQueue},
		{name: "a Queue whose ring is not a power of two", object: queueHeader + 100,
			handle: handleWire{Kind: kindQueue, Size: queueHeader + 100}, as: kindQueue},
		{name: "a Pipe too small", object: 64,
			handle: handleWire{Kind: kindPipe, Size: 64}, as: kindPipe},
		{name: "a Lock of the wrong size", object: 64,
			handle: handleWire{Kind: kindLock, Size: 8}, as: kindLock},
		{name: "an Array smaller than its header", object: 64,
			handle: handleWire{Kind: kindArray, Size: 4}, as: kindArray},
		{name: "a negative size", object: 64,
			handle: handleWire{Kind: kindSharedMemory, Size: -4096}, as: kindSharedMemory,
			retried: handleWire{Kind: kindSharedMemory, Size: 64}},
		{name: "an unknown kind", object: 64,
			handle: handleWire{Kind: 99, Size: 64}, as: kindSharedMemory},
		{name: "another kind than it was mapped as", object: 64,
			first:  handleWire{Kind: kindSharedMemory, Size: 64},
			handle: handleWire{Kind: kindQueue, Size: queueSize}, as: kindQueue},
		{name: "another size than it was mapped with", object: 4096,
			first:  handleWire{Kind: kindSharedMemory, Size: 64},
			handle: handleWire{Kind: kindSharedMemory, Size: 4096}, as: kindSharedMemory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := receiveTestFD(t, tt.object)
			if tt.first.Kind != 0 {
				tt.first.ID = id
				if err := decodeTestObject(tt.first.Kind, encodeTestHandle(t, tt.first)); err != nil {
					t.Fatalf("the first decoding: %v", err)
				}
			}
			tt.handle.ID = id
			err := decodeTestObject(tt.as, encodeTestHandle(t, tt.handle))
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("got %v, want an error matching wire.ErrMalformed", err)
			}
			if tt.retried.Kind != 0 {
				tt.retried.ID = id
				if err := decodeTestObject(tt.retried.Kind, encodeTestHandle(t, tt.retried)); err != nil {
					t.Fatalf("the right handle after the wrong one: %v", err)
				}
			}
		})
	}
}

func TestHandleRightKindAndSize(t *testing.T) {
	for _, w := range []handleWire{
		{Kind: kindSharedMemory, Size: 100},
		{Kind: kindQueue, Size: queueHeader + 4096},
		{Kind: kindPipe, Size: 4096 + 2*pipeRingLen},
		{Kind: kindLock, Size: 64},
		{Kind: kindArray, Size: valueOffset + 8*10},
	} {
		w.ID = receiveTestFD(t, w.Size)
		if err := decodeTestObject(w.Kind, encodeTestHandle(t, w)); err != nil {
			t.Errorf("%v of %d bytes: %v", w.Kind, w.Size, err)
		}
	}
}

// TestObjectSizes: every constructor makes an object of a size that
// checkObjectSize takes, so a worker maps what its parent made.
func TestObjectSizes(t *testing.T) {
	must := func(h *handle, err error) *handle {
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	handleOf := func(o sharedObject, err error) (*handle, error) {
		if err != nil {
			return nil, err
		}
		return o.mpHandle(), nil
	}
	for _, h := range []*handle{
		must(handleOf(NewLock())),
		must(handleOf(NewRLock())),
		must(handleOf(NewValue[int64](0))),
		must(handleOf(NewArray[int32](3))),
		must(handleOf(NewArray[float64](1000))),
		must(handleOf(NewSemaphore(2))),
		must(handleOf(NewEvent())),
		must(handleOf(NewCondition())),
		must(handleOf(NewBarrier(2))),
		must(handleOf(NewQueue[int](QueueOptions{}))),
		must(handleOf(NewQueue[int](QueueOptions{BufferSize: 100}))),
		must(handleOf(CreateSharedMemory("", 1))),
	} {
		if err := checkObjectSize(h.kind, h.size); err != nil {
			t.Errorf("a new %v: %v", h.kind, err)
		}
	}
	a, _, err := Pipe[int]()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkObjectSize(kindPipe, a.h.size); err != nil {
		t.Errorf("a new Pipe: %v", err)
	}
}
