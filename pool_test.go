package mp_test

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var (
	poolSquare = mp.Register("test.pool.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	poolPID    = mp.Register("test.pool.pid", func(ctx context.Context, _ int) (int, error) { return os.Getpid(), nil })
	// poolCrash destroys its worker for every 50th item, in turn: SIGKILL of
	// itself, os.Exit(1), a fatal runtime error, and an endless loop.
	poolCrash = mp.Register("test.pool.crash", func(ctx context.Context, x int) (int, error) {
		if x%50 == 49 {
			switch (x / 50) % 4 {
			case 0:
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			case 1:
				os.Exit(1)
			case 2:
				var mu sync.Mutex
				mu.Unlock() // fatal error: sync: unlock of unlocked mutex
			case 3:
				for {
				}
			}
		}
		return x * x, nil
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

func TestMapSquares(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	in := make([]int, 1000)
	for i := range in {
		in[i] = i
	}
	for _, chunk := range []int{0, 1, 7, 1000} {
		got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, in, mp.ChunkSize(chunk))
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		for i, v := range got {
			if v != i*i {
				t.Fatalf("chunk %d: got[%d] = %d, want %d", chunk, i, v, i*i)
			}
		}
	}
}

func TestMapCrashMatrix(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2, TaskTimeout: 500 * time.Millisecond, Worker: mp.WorkerOptions{Stderr: io.Discard}})
	in := make([]int, 2000)
	for i := range in {
		in[i] = i
	}
	start := time.Now()
	out, errs, err := mp.MapAll(bounded(t, 90*time.Second), p, poolCrash, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2000 tasks with 40 crashes in %v; stats %+v", time.Since(start), p.Stats())
	for i := range in {
		var e error
		if errs != nil {
			e = errs[i]
		}
		if i%50 != 49 {
			if e != nil || out[i] != i*i {
				t.Errorf("item %d: got %d, %v; want %d, nil", i, out[i], e, i*i)
			}
			continue
		}
		te, ok := errors.AsType[*mp.TaskError](e)
		if !ok || te.Index != i {
			t.Errorf("item %d: got %v, want a *mp.TaskError with index %d", i, e, i)
			continue
		}
		exit, isExit := errors.AsType[*mp.ExitError](e)
		switch (i / 50) % 4 {
		case 0:
			if !isExit || exit.Signal() != syscall.SIGKILL {
				t.Errorf("item %d: got %v, want an *mp.ExitError for SIGKILL", i, e)
			}
		case 1:
			if !isExit || exit.ExitCode() != 1 {
				t.Errorf("item %d: got %v, want an *mp.ExitError with code 1", i, e)
			}
		case 2:
			if !isExit || exit.ExitCode() != 2 || !contains(exit.Output, "unlock of unlocked mutex") {
				t.Errorf("item %d: got %v, want an *mp.ExitError with code 2 and the fatal error", i, e)
			}
		case 3:
			if !errors.Is(e, context.DeadlineExceeded) {
				t.Errorf("item %d: got %v, want context.DeadlineExceeded", i, e)
			}
		}
	}
	waitWorkers(t, p, 2)
	got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, []int{1, 2, 3})
	if err != nil || !slices.Equal(got, []int{1, 4, 9}) {
		t.Errorf("after the crashes: got %v, %v; want [1 4 9]", got, err)
	}
}

func contains(b []byte, s string) bool {
	return slices.Contains([]string{string(b)}, s) || indexOf(b, s) >= 0
}

func indexOf(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
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

func TestMaxTasksPerWorker(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2, MaxTasksPerWorker: 2})
	pids := map[int]bool{}
	for range 10 {
		pid, err := mp.Apply(bounded(t, 30*time.Second), p, poolPID, 0)
		if err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
	}
	if len(pids) < 5 {
		t.Errorf("got %d distinct worker pids, want at least 5", len(pids))
	}
}
