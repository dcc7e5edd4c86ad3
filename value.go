package mp

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/go-mp/mp/internal/shmem"
)

// Number is the element type of a [Value]: a number of a fixed size that
// the processor updates atomically.
type Number interface {
	~int32 | ~int64 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// Value is a number in shared memory, as Python's multiprocessing.Value:
// every process it is passed to sees and updates the same number. Load,
// Store, Add and CompareAndSwap are atomic; a compound update (read, then
// write) needs the Value's own lock: Update, or Lock and Unlock, which
// work as a [Lock] does, including when a holder dies (ErrOwnerDied). Pass
// it like a [SharedMemory].
type Value[T Number] struct{ object }

// valueOffset is where the number lives in the segment: after the lock word.
const valueOffset = 8

// NewValue makes a Value holding v.
func NewValue[T Number](v T) (*Value[T], error) {
	if err := shmem.Supported(); err != nil {
		return nil, err
	}
	h, err := newHandle(kindValue, 64)
	if err != nil {
		return nil, fmt.Errorf("mp: NewValue: %w", err)
	}
	x := &Value[T]{object{h: h}}
	x.own = own(x, h)
	x.Store(v)
	return x, nil
}

// UnmarshalCBOR decodes a Value passed by the parent, in a worker.
func (x *Value[T]) UnmarshalCBOR(data []byte) error { return x.unmarshal(data, kindValue) }

func (x *Value[T]) ptr() unsafe.Pointer { return unsafe.Pointer(&x.h.mem[valueOffset]) }

func (x *Value[T]) is64() bool {
	var zero T
	return unsafe.Sizeof(zero) == 8
}

func (x *Value[T]) isFloat() bool {
	var one T = 1
	return one/2 != 0 // integer division would make it 0
}

func (x *Value[T]) bits() uint64 {
	if x.is64() {
		return atomic.LoadUint64((*uint64)(x.ptr()))
	}
	return uint64(atomic.LoadUint32((*uint32)(x.ptr())))
}

func (x *Value[T]) fromBits(b uint64) T {
	switch {
	case x.isFloat() && x.is64():
		return T(math.Float64frombits(b))
	case x.isFloat():
		return T(math.Float32frombits(uint32(b)))
	case x.is64():
		return T(b)
	}
	var zero T
	if zero-1 < zero { // signed: sign-extend
		return T(int32(uint32(b)))
	}
	return T(uint32(b))
}

func (x *Value[T]) toBits(v T) uint64 {
	switch {
	case x.isFloat() && x.is64():
		return math.Float64bits(float64(v))
	case x.isFloat():
		return uint64(math.Float32bits(float32(v)))
	case x.is64():
		return uint64(v)
	}
	return uint64(uint32(v))
}

func (x *Value[T]) cas(old, new uint64) bool {
	if x.is64() {
		return atomic.CompareAndSwapUint64((*uint64)(x.ptr()), old, new)
	}
	return atomic.CompareAndSwapUint32((*uint32)(x.ptr()), uint32(old), uint32(new))
}

// Load returns the number.
func (x *Value[T]) Load() T { return x.fromBits(x.bits()) }

// Store sets the number.
func (x *Value[T]) Store(v T) {
	if x.is64() {
		atomic.StoreUint64((*uint64)(x.ptr()), x.toBits(v))
	} else {
		atomic.StoreUint32((*uint32)(x.ptr()), uint32(x.toBits(v)))
	}
}

// Add adds delta to the number, atomically, and returns the new number.
func (x *Value[T]) Add(delta T) T {
	for {
		old := x.bits()
		v := x.fromBits(old) + delta
		if x.cas(old, x.toBits(v)) {
			return v
		}
	}
}

// CompareAndSwap sets the number to new if it is old, atomically, and
// reports whether it did. Floats are compared bit for bit: -0 is not 0,
// and a NaN matches the same NaN.
func (x *Value[T]) CompareAndSwap(old, new T) bool {
	return x.cas(x.toBits(old), x.toBits(new))
}

func (x *Value[T]) word() *uint32 { return shmem.Word(x.h.mem, 0) }

// Lock acquires the Value's lock, as Lock.Lock does.
func (x *Value[T]) Lock(ctx context.Context) error {
	if ctx == nil {
		return nilContext("Value.Lock")
	}
	if x.own.closed() {
		return errClosed("Value")
	}
	return lockWord(ctx, x.word())
}

// Unlock releases the Value's lock, as Lock.Unlock does.
func (x *Value[T]) Unlock() error {
	if x.own.closed() {
		return errClosed("Value")
	}
	return unlockWord(x.word())
}

// Update calls f with the number under the Value's lock, and stores what f
// leaves in it. If the lock's holder had died, f runs all the same and the
// error matches ErrOwnerDied.
func (x *Value[T]) Update(ctx context.Context, f func(*T)) error {
	err := x.Lock(ctx)
	if err != nil && !isOwnerDied(err) {
		return err
	}
	unlocked := false
	defer func() { // f may panic: the lock must not stay held
		if !unlocked {
			x.Unlock()
		}
	}()
	v := x.Load()
	f(&v)
	x.Store(v)
	unlocked = true
	if uerr := x.Unlock(); uerr != nil {
		return uerr
	}
	return err
}
