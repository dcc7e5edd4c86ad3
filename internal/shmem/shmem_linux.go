// Package shmem is the operating system's side of mp's shared state:
// anonymous shared memory (memfd), named shared memory (/dev/shm),
// mappings, and futex waits on words in shared memory.
package shmem

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Supported reports whether shared memory works here.
func Supported() error { return nil }

// Create makes an anonymous shared memory object of size bytes and returns
// its descriptor (close-on-exec). It vanishes when the last descriptor and
// mapping of it are gone, however the processes holding them end.
//
// It is sealed against shrinking, and against further seals: a holder
// that truncated it would make every other holder's access past the new
// end fault (SIGBUS), and one that sealed it against writing would keep
// the others from mapping it (issue 18).
func Create(size int) (int, error) {
	fd, err := unix.MemfdCreate("mp", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, os.NewSyscallError("memfd_create", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return fd, nil
}

// Open opens (or, with create, creates exclusively) the named object at
// path, of size bytes when created. It does not follow a symbolic link,
// and opens only a regular file owned by this process's user: another
// user could otherwise put an object of theirs under the name this one
// expects, and read or change what it shares (issue 18).
func Open(path string, size int, create bool) (fd, actual int, err error) {
	flags := unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	if create {
		flags |= unix.O_CREAT | unix.O_EXCL
		// Its pages are taken when first touched: one that does not fit
		// would be a SIGBUS then, so say it now.
		var st unix.Statfs_t
		if dir := filepath.Dir(path); unix.Statfs(dir, &st) == nil {
			if free := st.Bavail * uint64(st.Bsize); uint64(size) > free {
				return -1, 0, fmt.Errorf("%d bytes do not fit in %s, which has %d bytes free: %w", size, dir, free, unix.ENOSPC)
			}
		}
	}
	fd, err = unix.Open(path, flags, 0o600)
	if err == unix.ELOOP {
		return -1, 0, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("it is a symbolic link, which shared memory is never opened through: %w", err)}
	}
	if err != nil {
		return -1, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if create {
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			unix.Close(fd)
			unix.Unlink(path)
			return -1, 0, os.NewSyscallError("ftruncate", err)
		}
		return fd, size, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, os.NewSyscallError("fstat", err)
	}
	switch euid := os.Geteuid(); {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("%s is not a regular file (mode %#o): %w", path, st.Mode, os.ErrPermission)
	case int(st.Uid) != euid:
		err = fmt.Errorf("%s belongs to user %d, not to this process's user %d: it may not be the block expected, so it is refused: %w", path, st.Uid, euid, os.ErrPermission)
	case st.Size < 0 || uint64(st.Size) > uint64(maxInt):
		err = fmt.Errorf("%s has %d bytes, more than this process can map", path, st.Size)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, int(st.Size), nil
}

const maxInt = int(^uint(0) >> 1)

// Size returns the size of the object fd in bytes.
func Size(fd int) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, os.NewSyscallError("fstat", err)
	}
	return st.Size, nil
}

// Unlink removes the name at path.
func Unlink(path string) error {
	if err := unix.Unlink(path); err != nil {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}

// Map maps size bytes of fd, shared, read and write.
func Map(fd, size int) ([]byte, error) {
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return b, nil
}

// Unmap undoes Map.
func Unmap(b []byte) error { return unix.Munmap(b) }

// Close closes a descriptor.
func Close(fd int) error { return unix.Close(fd) }

// The futex operations, shared between processes (not FUTEX_PRIVATE).
const (
	futexWait = 0
	futexWake = 1
)

// Wait sleeps while *addr == val, for at most d, or until Wake. It may
// return early, spuriously: callers check their condition again.
func Wait(addr *uint32, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait, uintptr(val),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// Wake wakes up to n processes waiting on addr.
func Wake(addr *uint32, n int) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake, uintptr(n), 0, 0, 0)
}

// Alive reports whether process pid exists (and is not a zombie).
func Alive(pid int) bool {
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err)
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return !(i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X'))
		}
	}
	return true
}

// Word returns the uint32 at offset off of b, for atomics and futexes.
func Word(b []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// MaxSize is the machine's memory, in bytes: no shared block can be larger.
func MaxSize() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}
