package mp

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/go-mp/mp/internal/shmem"
)

// Number is the element type of a [Value] or an [Array]: a number of a
// fixed size that the processor updates atomically.
type Number interface {
	~int32 | ~int64 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// Value is a number in shared memory, as Python's multiprocessing.Value:
// every process it is passed to sees and updates the same number. Load,
// Store, Add and CompareAndSwap are atomic; a compound update (read, then
// write) needs the Value's own lock: Update, or Lock and Unlock, which
// work as a [Lock] does, including when a holder dies (ErrOwnerDied). Pass
// it like a [SharedMemory].
//
// Cost: each atomic operation is one instruction on shared memory, with no
// system call; an Update, uncontended, is a compare-and-swap more (see
// BenchmarkValue in bench/, and bench/RESULTS.md).
type Value[T Number] struct{ object }

// valueOffset is where the numbers live in the segment: after the lock word.
const valueOffset = 8

// NewValue makes a Value holding v.
func NewValue[T Number](v T) (*Value[T], error) {
	x, err := newObject[Value[T]](kindValue, 64)
	if err != nil {
		return nil, err
	}
	x.Store(v)
	return x, nil
}

// UnmarshalCBOR decodes a Value passed by the parent, in a worker.
func (x *Value[T]) UnmarshalCBOR(data []byte) error { return x.unmarshal(data, kindValue) }

func (x *Value[T]) cell() cell[T] { return cell[T]{unsafe.Pointer(&x.h.mem[valueOffset])} }

// Load returns the number.
func (x *Value[T]) Load() T { return x.cell().load() }

// Store sets the number.
func (x *Value[T]) Store(v T) { x.cell().store(v) }

// Add adds delta to the number, atomically, and returns the new number.
func (x *Value[T]) Add(delta T) T { return x.cell().add(delta) }

// CompareAndSwap sets the number to new if it is old, atomically, and
// reports whether it did. Floats are compared bit for bit: -0 is not 0,
// and a NaN matches the same NaN.
func (x *Value[T]) CompareAndSwap(old, new T) bool { return x.cell().cas(old, new) }

// Lock acquires the Value's lock, as Lock.Lock does.
func (x *Value[T]) Lock(ctx context.Context) error {
	defer runtime.KeepAlive(x) // see object
	return x.lock(ctx, "Value")
}

// Unlock releases the Value's lock, as Lock.Unlock does.
func (x *Value[T]) Unlock() error { return x.unlock("Value") }

// Update calls f with the number under the Value's lock, and stores what f
// leaves in it. If the lock's holder had died, f runs all the same and the
// error matches ErrOwnerDied.
func (x *Value[T]) Update(ctx context.Context, f func(*T)) error {
	defer runtime.KeepAlive(x) // see object
	return x.locked(ctx, "Value", func() {
		v := x.Load()
		f(&v)
		x.Store(v)
	})
}

// Array is a fixed number of numbers in shared memory, as Python's
// multiprocessing.Array: every process it is passed to sees and updates
// the same elements. Each element's Load, Store, Add and CompareAndSwap
// are atomic; an update of several elements needs the Array's own lock:
// Update, or Lock and Unlock, which work as a [Lock] does, including when
// a holder dies (ErrOwnerDied). Pass it like a [SharedMemory].
//
// Cost: as a [Value]'s, per element. For bulk numeric work on large data,
// a [SharedMemory] with an unsafe view of its bytes avoids the atomics.
type Array[T Number] struct {
	object
	n int
}

// NewArray makes an Array of n elements, all zero.
func NewArray[T Number](n int) (*Array[T], error) {
	if err := shmem.Supported(); err != nil {
		return nil, err
	}
	var zero T
	max := (shmem.MaxSize() - valueOffset) / uint64(unsafe.Sizeof(zero))
	if n <= 0 || uint64(n) > max {
		return nil, fmt.Errorf("mp: NewArray: %d elements: want 1 to %d (this machine's memory)", n, max)
	}
	a, err := newObject[Array[T]](kindArray, valueOffset+n*int(unsafe.Sizeof(zero)))
	if err != nil {
		return nil, err
	}
	a.n = n
	return a, nil
}

// NewArrayOf makes an Array holding a copy of vs.
func NewArrayOf[T Number](vs ...T) (*Array[T], error) {
	a, err := NewArray[T](len(vs))
	if err != nil {
		return nil, err
	}
	copy(a.Slice(), vs)
	return a, nil
}

// UnmarshalCBOR decodes an Array passed by the parent, in a worker.
func (a *Array[T]) UnmarshalCBOR(data []byte) error {
	if err := a.unmarshal(data, kindArray); err != nil {
		return err
	}
	var zero T
	a.n = (a.h.size - valueOffset) / int(unsafe.Sizeof(zero))
	return nil
}

// Len returns the number of elements.
func (a *Array[T]) Len() int { return a.n }

func (a *Array[T]) cell(i int) cell[T] {
	if uint(i) >= uint(a.n) {
		panic(fmt.Sprintf("mp: Array index %d out of range [0:%d]", i, a.n))
	}
	var zero T
	return cell[T]{unsafe.Pointer(&a.h.mem[valueOffset+i*int(unsafe.Sizeof(zero))])}
}

// Load returns element i. Like every method with an index, it panics if i
// is out of range, as indexing a slice does.
func (a *Array[T]) Load(i int) T { return a.cell(i).load() }

// Store sets element i.
func (a *Array[T]) Store(i int, v T) { a.cell(i).store(v) }

// Add adds delta to element i, atomically, and returns the new element.
func (a *Array[T]) Add(i int, delta T) T { return a.cell(i).add(delta) }

// CompareAndSwap sets element i to new if it is old, atomically, and
// reports whether it did (floats compare bit for bit, as in Value).
func (a *Array[T]) CompareAndSwap(i int, old, new T) bool { return a.cell(i).cas(old, new) }

// Slice returns the elements themselves, in shared memory: what is written
// to it is seen by every process. Reads and writes through it are plain,
// not atomic: make them under the Array's lock, or from one process at a
// time. It is valid until Close (in a worker, while the Array is reachable).
func (a *Array[T]) Slice() []T {
	return unsafe.Slice((*T)(unsafe.Pointer(&a.h.mem[valueOffset])), a.n)
}

// Lock acquires the Array's lock, as Lock.Lock does.
func (a *Array[T]) Lock(ctx context.Context) error {
	defer runtime.KeepAlive(a) // see object
	return a.lock(ctx, "Array")
}

// Unlock releases the Array's lock, as Lock.Unlock does.
func (a *Array[T]) Unlock() error { return a.unlock("Array") }

// Update calls f with the elements under the Array's lock. If the lock's
// holder had died, f runs all the same and the error matches ErrOwnerDied.
// What f reads and writes is plain memory: safe against other holders of
// the lock, not against Store or Add by a process that does not hold it.
func (a *Array[T]) Update(ctx context.Context, f func([]T)) error {
	defer runtime.KeepAlive(a) // see object
	return a.locked(ctx, "Array", func() { f(a.Slice()) })
}

// Copy returns a copy of the elements, read under the Array's lock, as
// Python's arr[:] does.
func (a *Array[T]) Copy(ctx context.Context) ([]T, error) {
	defer runtime.KeepAlive(a) // see object
	var out []T
	err := a.locked(ctx, "Array", func() { out = append([]T(nil), a.Slice()...) })
	if out == nil {
		return nil, err
	}
	return out, err
}

// The lock word of a Value or Array is the first of its segment.

func (o *object) lock(ctx context.Context, what string) error {
	if ctx == nil {
		return nilContext(what + ".Lock")
	}
	if o.own.closed() {
		return errClosed(what)
	}
	return lockWord(ctx, shmem.Word(o.h.mem, 0))
}

func (o *object) unlock(what string) error {
	if o.own.closed() {
		return errClosed(what)
	}
	return unlockWord(shmem.Word(o.h.mem, 0))
}

// locked runs f under the object's lock; if the lock's holder had died, f
// runs all the same and the error matches ErrOwnerDied.
func (o *object) locked(ctx context.Context, what string, f func()) error {
	err := o.lock(ctx, what)
	if err != nil && !isOwnerDied(err) {
		return err
	}
	unlocked := false
	defer func() { // f may panic: the lock must not stay held
		if !unlocked {
			o.unlock(what)
		}
	}()
	f()
	unlocked = true
	if uerr := o.unlock(what); uerr != nil {
		return uerr
	}
	return err
}

// cell is one number of a Value or Array, in shared memory.
type cell[T Number] struct{ p unsafe.Pointer }

func is64[T Number]() bool {
	var zero T
	return unsafe.Sizeof(zero) == 8
}

func isFloat[T Number]() bool {
	var one T = 1
	return one/2 != 0 // integer division would make it 0
}

func (c cell[T]) bits() uint64 {
	if is64[T]() {
		return atomic.LoadUint64((*uint64)(c.p))
	}
	return uint64(atomic.LoadUint32((*uint32)(c.p)))
}

func fromBits[T Number](b uint64) T {
	switch {
	case isFloat[T]() && is64[T]():
		return T(math.Float64frombits(b))
	case isFloat[T]():
		return T(math.Float32frombits(uint32(b)))
	case is64[T]():
		return T(b)
	}
	var zero T
	if zero-1 < zero { // signed: sign-extend
		return T(int32(uint32(b)))
	}
	return T(uint32(b))
}

func toBits[T Number](v T) uint64 {
	switch {
	case isFloat[T]() && is64[T]():
		return math.Float64bits(float64(v))
	case isFloat[T]():
		return uint64(math.Float32bits(float32(v)))
	case is64[T]():
		return uint64(v)
	}
	return uint64(uint32(v))
}

func (c cell[T]) casBits(old, new uint64) bool {
	if is64[T]() {
		return atomic.CompareAndSwapUint64((*uint64)(c.p), old, new)
	}
	return atomic.CompareAndSwapUint32((*uint32)(c.p), uint32(old), uint32(new))
}

func (c cell[T]) load() T { return fromBits[T](c.bits()) }

func (c cell[T]) store(v T) {
	if is64[T]() {
		atomic.StoreUint64((*uint64)(c.p), toBits(v))
	} else {
		atomic.StoreUint32((*uint32)(c.p), uint32(toBits(v)))
	}
}

func (c cell[T]) add(delta T) T {
	for {
		old := c.bits()
		v := fromBits[T](old) + delta
		if c.casBits(old, toBits(v)) {
			return v
		}
	}
}

func (c cell[T]) cas(old, new T) bool { return c.casBits(toBits(old), toBits(new)) }
