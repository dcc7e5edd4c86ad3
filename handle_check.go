package mp

import (
	"fmt"

	"github.com/go-mp/mp/internal/shmem"
	"github.com/go-mp/mp/internal/wire"
)

// A handle's kind and size come from another process, and name memory
// whose layout the kind fixes: a handle that says more bytes than its
// object has would be mapped past the object's end (a SIGBUS when
// touched), and one too small for its kind's layout would be sliced out
// of bounds. So a worker checks both before it maps a handle, and every
// later handle of the same ID against the first (issue 18).

// checkObjectSize returns an error if an object of kind cannot be size
// bytes. The fixed sizes are those the kinds' constructors give their
// objects (TestHandleRightKindAndSize checks that they agree).
func checkObjectSize(kind handleKind, size int) error {
	var ok bool
	switch kind {
	case kindSharedMemory:
		ok = size > 0
	case kindLock, kindRLock, kindValue, kindEvent:
		ok = size == 64
	case kindCondition:
		ok = size == condSize
	case kindSemaphore:
		ok = size == semSize
	case kindBarrier:
		ok = size == 4096
	case kindPipe:
		ok = size == 4096+2*pipeRingLen
	case kindQueue: // a header page, then a ring a power of two long
		n := size - queueHeader
		ok = n >= 64 && n&(n-1) == 0
	case kindArray:
		ok = size > valueOffset
	default:
		return fmt.Errorf("%w: unknown shared object kind %d", wire.ErrMalformed, uint8(kind))
	}
	if !ok {
		return fmt.Errorf("%w: a %v of %d bytes: no %v has that size", wire.ErrMalformed, kind, size, kind)
	}
	return nil
}

// checkFits returns an error if the object fd has fewer than size bytes.
func checkFits(kind handleKind, id uint64, fd, size int) error {
	n, err := shmem.Size(fd)
	if err != nil {
		return fmt.Errorf("mp: %v %d: %w", kind, id, err)
	}
	if n < int64(size) {
		return fmt.Errorf("%w: %v %d says %d bytes, and its object has %d", wire.ErrMalformed, kind, id, size, n)
	}
	return nil
}

// checkSame returns an error if h, mapped already, is not the object of
// kind and size that a later handle of its ID says.
func (h *handle) checkSame(kind handleKind, size int) error {
	if h.kind != kind || h.size != size {
		return fmt.Errorf("%w: %v %d of %d bytes came as a %v of %d bytes", wire.ErrMalformed, h.kind, h.id, h.size, kind, size)
	}
	return nil
}
