package mp

import (
	"fmt"
	"strings"
	"sync"

	"github.com/go-mp/mp/internal/shmem"
	"github.com/go-mp/mp/internal/wire"
)

// SharedMemory is a block of memory shared by processes, as Python's
// multiprocessing.shared_memory.SharedMemory: Bytes is the same memory in
// every process that holds it. Pass it to other processes as (a field of)
// the argument of [Spawn], of any pool call, or of [Bind] for a pool's
// Init: its descriptor goes to each worker once, with the first task that
// carries it, and the worker maps it once and keeps it, so passing it costs
// almost nothing, whatever its size.
//
// An anonymous SharedMemory (the default) has no name anywhere: it is
// freed when the last process that holds it has closed it or ended,
// however it ended, so a crash leaks nothing, and nothing is left in
// /dev/shm. It cannot shrink: a holder that tries to truncate it fails,
// so no holder can make the others' accesses fault. A named one can also
// be opened by an unrelated process with [OpenSharedMemory]; its name
// stays until [SharedMemory.Unlink]. A named block is a file in /dev/shm,
// which the kernel does not let mp seal: a process of the same user that
// truncates it makes the others fault (SIGBUS) where they touch past its
// new end.
//
// Bytes is plain memory: concurrent writers must coordinate, with a
// [Lock] or by writing disjoint parts. Shared memory is Linux only for now.
type SharedMemory struct {
	h      *handle
	name   string
	worker bool // received in a task: kept mapped for the worker's life

	mu       sync.Mutex
	closed   bool
	unlinked bool
}

// shmDir is where named shared memory lives, as shm_open(3) puts it.
const shmDir = "/dev/shm/"

// CreateSharedMemory makes a shared memory block of size bytes, zeroed.
// An empty name makes an anonymous one; otherwise the name (letters,
// digits and "._-", up to 200 bytes) must be new, and others can open it
// with OpenSharedMemory until Unlink. It returns an error for a size that
// is not positive or is over the machine's memory (for a named block: over
// what /dev/shm has free; the error matches syscall.ENOSPC), or a name
// that is invalid or taken.
func CreateSharedMemory(name string, size int) (*SharedMemory, error) {
	if err := checkSize("CreateSharedMemory", size); err != nil {
		return nil, err
	}
	if name == "" {
		h, err := newHandle(kindSharedMemory, size)
		if err != nil {
			return nil, fmt.Errorf("mp: CreateSharedMemory: %w", err)
		}
		return &SharedMemory{h: h}, nil
	}
	if err := checkShmName(name); err != nil {
		return nil, err
	}
	fd, _, err := shmem.Open(shmDir+name, size, true)
	if err != nil {
		return nil, fmt.Errorf("mp: CreateSharedMemory %q: %w", name, err)
	}
	h, err := mapHandle(kindSharedMemory, size, fd, newHandleID())
	if err != nil {
		shmem.Unlink(shmDir + name)
		return nil, fmt.Errorf("mp: CreateSharedMemory %q: %w", name, err)
	}
	h.name = name
	return &SharedMemory{h: h, name: name}, nil
}

// OpenSharedMemory opens the named shared memory another process created.
// The error matches os.ErrNotExist if there is none by that name. It
// opens only a block this process's user made: a name that is a symbolic
// link, or that another user's block (or not a block) has, is refused
// with an error, matching os.ErrPermission for the latter, as another
// user may have put it there for this process to share its data in.
func OpenSharedMemory(name string) (*SharedMemory, error) {
	if err := checkShmName(name); err != nil {
		return nil, err
	}
	fd, size, err := shmem.Open(shmDir+name, 0, false)
	if err != nil {
		return nil, fmt.Errorf("mp: OpenSharedMemory %q: %w", name, err)
	}
	if size == 0 {
		shmem.Close(fd)
		return nil, fmt.Errorf("mp: OpenSharedMemory %q: it is empty", name)
	}
	h, err := mapHandle(kindSharedMemory, size, fd, newHandleID())
	if err != nil {
		return nil, fmt.Errorf("mp: OpenSharedMemory %q: %w", name, err)
	}
	h.name = name
	return &SharedMemory{h: h, name: name}, nil
}

func checkSize(op string, size int) error {
	if size <= 0 {
		return fmt.Errorf("mp: %s: size %d: it must be positive", op, size)
	}
	if max := shmem.MaxSize(); max > 0 && uint64(size) > max {
		return fmt.Errorf("mp: %s: size %d is over this machine's memory (%d bytes)", op, size, max)
	}
	return shmem.Supported()
}

func checkShmName(name string) error {
	ok := name != "" && len(name) <= 200 && name != "." && name != ".."
	for _, c := range []byte(name) {
		ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-", c) >= 0)
	}
	if !ok {
		return fmt.Errorf("mp: shared memory name %q: use 1 to 200 letters, digits and ._-", name)
	}
	return nil
}

// Bytes returns the shared memory. It must not be used after Close.
func (m *SharedMemory) Bytes() []byte { return m.h.mem }

// Size returns the size in bytes.
func (m *SharedMemory) Size() int { return m.h.size }

// Name returns the name, or "" for an anonymous block.
func (m *SharedMemory) Name() string { return m.name }

// Close unmaps the memory from this process, once the calls that pass it
// are done with it. The memory lives on in the processes that still hold
// it. Close is idempotent. In a worker that received the block in a task,
// Close does nothing: the worker keeps it mapped for the next task.
func (m *SharedMemory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.worker {
		return nil
	}
	m.closed = true
	m.h.release()
	return nil
}

// Unlink removes the name of a named block, so that no one else can open
// it; the memory lives until the last holder closes it. It returns an error
// for an anonymous block, and one matching os.ErrNotExist the second time.
func (m *SharedMemory) Unlink() error {
	if m.name == "" {
		return fmt.Errorf("mp: SharedMemory.Unlink: the block is anonymous: it has no name to remove")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := shmem.Unlink(shmDir + m.name); err != nil {
		return fmt.Errorf("mp: SharedMemory %q: Unlink: %w", m.name, err)
	}
	m.unlinked = true
	return nil
}

// MarshalCBOR encodes the block as a reference to it, for mp to pass to
// another process; its bytes do not travel.
func (m *SharedMemory) MarshalCBOR() ([]byte, error) { return marshalHandle(m.h) }

// UnmarshalCBOR decodes a block passed by the parent, in a worker.
func (m *SharedMemory) UnmarshalCBOR(data []byte) error {
	h, w, err := unmarshalHandleWire(data, kindSharedMemory)
	name := w.Name
	if err != nil {
		return err
	}
	if name != "" && checkShmName(name) != nil { // Unlink removes shmDir+name
		return fmt.Errorf("%w: SharedMemory named %q", wire.ErrMalformed, name)
	}
	m.h, m.worker, m.name = h, true, name
	decoded(m, h)
	return nil
}

func (m *SharedMemory) mpHandle() *handle { return m.h }
