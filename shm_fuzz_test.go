package mp

import (
	"testing"
)

// The fuzz targets of what mp reads from shared memory and from the
// handles its parent sends: whatever the bytes, an error or a value,
// never a panic or an access out of bounds (issue 18). .ci/run runs each
// for a few seconds.

// fuzzRingData is the length of the fuzzed rings.
const fuzzRingData = 1024

// FuzzRingGet reads a ring of arbitrary header and records: get, then a
// put and a get again, on what is there.
func FuzzRingGet(f *testing.F) {
	seed := func(put [][]byte, got int) {
		hdr, data := make([]byte, ringHeader), make([]byte, fuzzRingData)
		r := newRing("Queue", hdr, data)
		*r.w(rMaxMessage) = 1 << 20
		for _, b := range put {
			r.put(tryContext, b, nil)
		}
		for range got {
			r.get(tryContext, nil, nil)
		}
		f.Add(hdr, data)
	}
	seed(nil, 0)
	seed([][]byte{[]byte("one"), []byte("two"), make([]byte, 300)}, 1)
	seed([][]byte{make([]byte, 700)}, 0) // a fragment, then an abort: it does not fit
	seed([][]byte{make([]byte, 400), make([]byte, 400), []byte("x")}, 2)
	f.Fuzz(func(t *testing.T, hdrIn, dataIn []byte) {
		hdr, data := make([]byte, ringHeader), make([]byte, fuzzRingData)
		copy(hdr, hdrIn)
		copy(data, dataIn)
		// The locks are left free: get waits for a message whose producer
		// holds the put lock, and that is not parsing.
		clear(hdr[rPutLock : rPutLock+4])
		clear(hdr[rGetLock : rGetLock+4])
		r := newRing("Queue", hdr, data)
		for range 4 {
			msg, err := r.get(tryContext, nil, nil)
			if err != nil {
				break
			}
			if len(msg) > r.maxMessage() {
				t.Fatalf("got a message of %d bytes, over the ring's limit of %d", len(msg), r.maxMessage())
			}
		}
		r.put(tryContext, []byte("a message"), nil)
		r.get(tryContext, nil, nil)
		r.len()
		r.puts()
		r.empty()
	})
}

// FuzzHandleDecode decodes a handle, then another of the same ID, each of
// any kind and size, as a worker does, and uses the objects decoded. The
// ID has an object of 64 bytes, or of a Queue's or a Pipe's size, or
// none.
func FuzzHandleDecode(f *testing.F) {
	for _, k := range []handleKind{kindSharedMemory, kindQueue, kindPipe, kindLock, kindArray, kindBarrier} {
		for obj := range uint8(4) {
			f.Add(uint8(k), 64, uint8(k), 64, obj, 0, "")
		}
	}
	f.Add(uint8(kindQueue), queueHeader+4096, uint8(kindQueue), queueHeader+4096, uint8(1), 0, "")
	f.Add(uint8(kindPipe), 4096+2*pipeRingLen, uint8(kindPipe), 4096+2*pipeRingLen, uint8(2), 1, "")
	f.Add(uint8(kindSharedMemory), 64, uint8(kindQueue), queueHeader+4096, uint8(0), 0, "name")
	f.Add(uint8(kindSharedMemory), 1<<30, uint8(kindSharedMemory), 64, uint8(0), 0, "../x")
	f.Fuzz(func(t *testing.T, k1 uint8, size1 int, k2 uint8, size2 int, obj uint8, aux int, name string) {
		var id uint64
		switch obj % 4 {
		case 0:
			id = receiveTestFD(t, 64)
		case 1:
			id = receiveTestFD(t, queueHeader+4096)
		case 2:
			id = receiveTestFD(t, 4096+2*pipeRingLen)
		default:
			id = 1<<63 | testHandleID.Add(1) // no descriptor
		}
		for _, w := range []handleWire{
			{Kind: handleKind(k1), ID: id, Size: size1, Name: name, Aux: aux},
			{Kind: handleKind(k2), ID: id, Size: size2, Name: name, Aux: aux},
		} {
			decodeTestObject(w.Kind, encodeTestHandle(t, w))
		}
	})
}
