//go:build linux

package mp

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// shmTruncate tries to shrink the block it is passed, then shows that its
// memory still works: it reads every page, writes the last byte, and
// returns the error of the truncation.
var shmTruncate = Register("test.shm.truncate", func(ctx context.Context, m *SharedMemory) (string, error) {
	err := unix.Ftruncate(m.h.descriptor(), 0)
	if err == nil {
		return "", errors.New("the truncation succeeded")
	}
	b := m.Bytes()
	sum := 0
	for i := 0; i < len(b); i += 4096 {
		sum += int(b[i])
	}
	b[len(b)-1] = 7
	return err.Error(), nil
})

// TestSharedMemorySealed: no holder of an anonymous block can shrink it,
// so none can make the others' accesses fault (SIGBUS).
func TestSharedMemorySealed(t *testing.T) {
	t.Parallel()
	m, err := CreateSharedMemory("", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := unix.Ftruncate(m.h.descriptor(), 4096); !errors.Is(err, unix.EPERM) {
		t.Fatalf("ftruncate by the maker: got %v, want EPERM", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := Spawn(ctx, shmTruncate, m, WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("the worker: %v", err)
	}
	if got != unix.EPERM.Error() {
		t.Errorf("ftruncate in the worker: got %q, want %q", got, unix.EPERM.Error())
	}
	if b := m.Bytes(); b[len(b)-1] != 7 {
		t.Errorf("the worker's write: got %d, want 7", b[len(b)-1])
	}
}
