//go:build !linux

package shmem

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// Supported reports that shared memory does not work here yet.
func Supported() error {
	return fmt.Errorf("mp: shared memory is supported on Linux only, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func Create(size int) (int, error)                              { return -1, Supported() }
func Open(path string, size int, create bool) (int, int, error) { return -1, 0, Supported() }
func Unlink(path string) error                                  { return Supported() }
func Size(fd int) (int64, error)                                { return 0, Supported() }
func Map(fd, size int) ([]byte, error)                          { return nil, Supported() }
func Unmap(b []byte) error                                      { return Supported() }
func Close(fd int) error                                        { return Supported() }
func Wait(addr *uint32, val uint32, d time.Duration)            { time.Sleep(d) }
func Wake(addr *uint32, n int)                                  {}
func Alive(pid int) bool                                        { return true }
func Word(b []byte, off int) *uint32                            { return (*uint32)(unsafe.Pointer(&b[off])) }

func MaxSize() uint64 { return 0 }
