package mp_test

// The helpers and registered functions that the Pool tests of several files
// share. The tests themselves are in a file per call kind (map_test.go,
// imap_test.go, apply_test.go), timeout_test.go and pool_lifecycle_test.go.

import (
	"context"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var (
	poolSquare = mp.Register("test.pool.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	// poolSlow sleeps for d, or until its context ends.
	poolSlow = mp.Register("test.pool.slow", func(ctx context.Context, d time.Duration) (int, error) {
		select {
		case <-time.After(d):
			return os.Getpid(), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// poolStubborn sleeps for d whatever its context says.
	poolStubborn = mp.Register("test.pool.stubborn", func(ctx context.Context, d time.Duration) (int, error) {
		time.Sleep(d)
		return os.Getpid(), nil
	})
)

func newPool(t *testing.T, opts mp.PoolOptions) *mp.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := mp.NewPool(ctx, opts)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func bounded(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitWorkers waits until the pool has n workers ready.
func waitWorkers(t *testing.T, p *mp.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().Workers != n {
		if time.Now().After(deadline) {
			t.Fatalf("workers: got %d, want %d", p.Stats().Workers, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// errAt returns the error of item i of what MapAll returned: errs is nil
// when no item failed.
func errAt(errs []error, i int) error {
	if errs == nil {
		return nil
	}
	return errs[i]
}

// mpGoroutines counts the goroutines running mp's code (not its tests').
func mpGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/go-mp/mp.") || strings.Contains(g, "github.com/go-mp/mp/internal/") {
			if !strings.Contains(g, "mp_test.") {
				count++
			}
		}
	}
	return count
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
