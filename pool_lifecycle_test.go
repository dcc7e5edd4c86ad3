package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var (
	poolPID = mp.Register("test.pool.pid", func(ctx context.Context, _ int) (int, error) { return os.Getpid(), nil })

	poolInitOK = mp.Register("test.pool.init-ok", func(ctx context.Context, v string) (struct{}, error) {
		initValue = v
		return struct{}{}, nil
	})
	poolInitFail = mp.Register("test.pool.init-fail", func(ctx context.Context, v string) (struct{}, error) {
		return struct{}{}, errors.New("init refused: " + v)
	})
	poolInitPoisoned = mp.Register("test.pool.init-poisoned", func(ctx context.Context, path string) (struct{}, error) {
		if _, err := os.Stat(path); err == nil {
			return struct{}{}, errors.New("poisoned")
		}
		return struct{}{}, nil
	})
	poolInitValue = mp.Register("test.pool.init-value", func(ctx context.Context, _ int) (string, error) { return initValue, nil })

	poolAlloc = mp.Register("test.pool.alloc", func(ctx context.Context, mb int) (int, error) {
		b := make([]byte, mb<<20)
		for i := range b {
			b[i] = 1
		}
		keep = append(keep, b)
		if mb >= 200 { // grow until killed
			for {
				b := make([]byte, 16<<20)
				for i := range b {
					b[i] = 1
				}
				keep = append(keep, b)
				time.Sleep(10 * time.Millisecond)
			}
		}
		return os.Getpid(), nil
	})
	poolRSS = mp.Register("test.pool.rss", func(ctx context.Context, _ int) (int64, error) {
		b, err := os.ReadFile("/proc/self/statm")
		if err != nil {
			return 0, err
		}
		var size, rss int64
		_, err = fmt.Sscan(string(b), &size, &rss)
		return rss * int64(os.Getpagesize()), err
	})

	poolEcho = mp.Register("test.pool.echo", func(ctx context.Context, b []byte) ([]byte, error) { return b, nil })
	poolBig  = mp.Register("test.pool.big", func(ctx context.Context, n int) ([]byte, error) { return make([]byte, n), nil })

	// poolOnce kills its worker the first time it runs for a given marker
	// file, and succeeds after.
	poolOnce = mp.Register("test.pool.once", func(ctx context.Context, marker string) (int, error) {
		if _, err := os.Stat(marker); err != nil {
			os.WriteFile(marker, nil, 0o600)
			os.Exit(7)
		}
		return 42, nil
	})
)

// In a worker: what Init set, and memory held on purpose.
var (
	initValue string
	keep      [][]byte
)

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

func TestMaxTasksPerWorkerCountsItems(t *testing.T) {
	// MaxTasksPerWorker counts tasks, not batches: a worker that was sent
	// two batches of 2 has run its 4 and is replaced.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, MaxTasksPerWorker: 4})
	pids, err := mp.Map(bounded(t, 30*time.Second), p, poolPID, make([]int, 16), mp.ChunkSize(2))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(pids); i += 4 {
		if !slices.Equal(pids[i:i+4], slices.Repeat(pids[i:i+1], 4)) {
			t.Errorf("tasks %d-%d ran on workers %v, want one worker for each run of 4", i, i+3, pids[i:i+4])
		}
		if i > 0 && pids[i] == pids[i-1] {
			t.Errorf("task %d ran on the worker of task %d (pid %d), which had run its 4 tasks", i, i-1, pids[i])
		}
	}
}

func TestInit(t *testing.T) {
	t.Parallel()
	t.Run("every worker runs it", func(t *testing.T) {
		t.Parallel()
		p := newPool(t, mp.PoolOptions{Workers: 2, Init: mp.Bind(poolInitOK, "configured")})
		got, err := mp.Map(bounded(t, 30*time.Second), p, poolInitValue, []int{1, 2, 3, 4}, mp.ChunkSize(1))
		if err != nil || !slices.Equal(got, []string{"configured", "configured", "configured", "configured"}) {
			t.Errorf("got %v, %v; want every worker configured", got, err)
		}
	})
	t.Run("its error fails NewPool", func(t *testing.T) {
		t.Parallel()
		_, err := mp.NewPool(bounded(t, 30*time.Second), mp.PoolOptions{Workers: 2, Init: mp.Bind(poolInitFail, "x")})
		if !errors.Is(err, mp.ErrWorkerStart) || !strings.Contains(err.Error(), "init refused: x") {
			t.Errorf("got %v, want an ErrWorkerStart carrying Init's error", err)
		}
	})
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	_, err := mp.NewPool(bounded(t, 30*time.Second), mp.PoolOptions{Workers: 1, Worker: mp.WorkerOptions{Dir: "/nonexistent-dir"}})
	if !errors.Is(err, mp.ErrWorkerStart) {
		t.Errorf("got %v, want ErrWorkerStart", err)
	}
}

func TestCrashLoopFailsCalls(t *testing.T) {
	t.Parallel()
	poison := filepath.Join(t.TempDir(), "poison")
	p := newPool(t, mp.PoolOptions{Workers: 1, Init: mp.Bind(poolInitPoisoned, poison)})
	ctx := bounded(t, 60*time.Second)
	if err := os.WriteFile(poison, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// From now on no new worker gets past Init.
	if _, err := mp.Apply(ctx, p, procExit, 3); err == nil {
		t.Fatal("the worker did not die")
	}
	_, err := mp.Apply(ctx, p, poolSquare, 2)
	if !errors.Is(err, mp.ErrWorkerStart) || !strings.Contains(err.Error(), "poisoned") {
		t.Errorf("got %v, want ErrWorkerStart with Init's error", err)
	}
	if _, err := mp.Map(ctx, p, poolSquare, []int{1, 2}); !errors.Is(err, mp.ErrWorkerStart) {
		t.Errorf("later call: got %v, want ErrWorkerStart", err)
	}
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 30*time.Second)
	var futures []*mp.Future[int]
	for range 6 {
		futures = append(futures, mp.ApplyAsync(ctx, p, poolSlow, 50*time.Millisecond))
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i, f := range futures {
		if _, err := f.Wait(ctx); err != nil {
			t.Errorf("task %d: got %v, want it finished by Shutdown", i, err)
		}
	}
	if _, err := mp.Apply(ctx, p, poolSquare, 1); !errors.Is(err, mp.ErrPoolClosed) {
		t.Errorf("after Shutdown: got %v, want ErrPoolClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

func TestShutdownDeadlineKills(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	f := mp.ApplyAsync(bounded(t, 30*time.Second), p, poolStubborn, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if _, err := f.Wait(bounded(t, 10*time.Second)); !errors.Is(err, mp.ErrPoolClosed) {
		t.Errorf("task: got %v, want ErrPoolClosed", err)
	}
}

func TestMemoryLimits(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("memory is read on Linux only")
	}
	ctx := bounded(t, 60*time.Second)
	// Limits are set above a fresh worker's size, which the race detector
	// multiplies.
	probe := newPool(t, mp.PoolOptions{Workers: 1})
	base, err := mp.Apply(ctx, probe, poolRSS, 0)
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	var log bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &log}, nil))
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("base %d; pool log:\n%s", base, log.String())
			mu.Unlock()
		}
	})
	p := newPool(t, mp.PoolOptions{Workers: 1, MaxWorkerMemory: base + 32<<20, WorkerMemoryLimit: base + 512<<20, Logger: logger})
	pid1, err := mp.Apply(ctx, p, poolAlloc, 64) // above the soft limit: recycled after it
	if err != nil {
		t.Fatal(err)
	}
	pid2, err := mp.Apply(ctx, p, poolAlloc, 1)
	if err != nil || pid2 == pid1 {
		t.Errorf("got pid %d, %v; want a new worker after the old one passed MaxWorkerMemory", pid2, err)
	}
	_, err = mp.Apply(ctx, p, poolAlloc, 200) // grows until killed
	if !errors.Is(err, mp.ErrMemoryLimit) {
		t.Errorf("got %v, want ErrMemoryLimit", err)
	}
	if st := p.Stats(); st.RestartCauses["recycle-memory"] != 1 || st.RestartCauses["memory"] != 1 {
		t.Errorf("restart causes: got %v, want one recycle-memory and one memory", st.RestartCauses)
	}
}

func TestMessageLimits(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, Worker: mp.WorkerOptions{MaxMessageSize: 1 << 20}})
	ctx := bounded(t, 30*time.Second)
	tests := []struct {
		name string
		call func() error
	}{
		{name: "oversized result", call: func() error { _, err := mp.Apply(ctx, p, poolBig, 2<<20); return err }},
		{name: "oversized argument", call: func() error { _, err := mp.Apply(ctx, p, poolEcho, make([]byte, 2<<20)); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, mp.ErrMessageTooLarge) {
				t.Errorf("got %v, want ErrMessageTooLarge", err)
			}
		})
	}
	if got, err := mp.Apply(ctx, p, poolEcho, []byte("ok")); err != nil || string(got) != "ok" {
		t.Errorf("after: got %q, %v", got, err)
	}
}

func TestClosedPool(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	p.Close()
	p.Close()
	ctx := bounded(t, 10*time.Second)
	// iterErrs returns the errors a sequence of Imap yields.
	iterErrs := func(seq func(yield func(int, error) bool)) []error {
		var errs []error
		for _, err := range seq {
			errs = append(errs, err)
		}
		return errs
	}
	tests := []struct {
		name string
		errs func() []error // the errors of the call; an iterator's, one per item it yields
	}{
		{name: "Map", errs: func() []error { _, err := mp.Map(ctx, p, poolSquare, []int{1}); return []error{err} }},
		{name: "MapAll", errs: func() []error { _, _, err := mp.MapAll(ctx, p, poolSquare, []int{1}); return []error{err} }},
		{name: "Imap", errs: func() []error { return iterErrs(mp.Imap(ctx, p, poolSquare, slices.Values([]int{1}))) }},
		{name: "ImapUnordered", errs: func() []error { return iterErrs(mp.ImapUnordered(ctx, p, poolSquare, slices.Values([]int{1}))) }},
		{name: "Apply", errs: func() []error { _, err := mp.Apply(ctx, p, poolSquare, 1); return []error{err} }},
		{name: "ApplyAsync", errs: func() []error { _, err := mp.ApplyAsync(ctx, p, poolSquare, 1).Wait(ctx); return []error{err} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.errs()
			if len(errs) == 0 {
				t.Errorf("got no error, want ErrPoolClosed")
			}
			for _, err := range errs {
				if !errors.Is(err, mp.ErrPoolClosed) {
					t.Errorf("got %v, want ErrPoolClosed", err)
				}
			}
		})
	}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	var last, calls int
	_, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, seq(100), mp.ChunkSize(10), mp.Progress(func(done, total int) {
		if total != 100 || done <= last {
			t.Errorf("progress: got (%d, %d) after %d", done, total, last)
		}
		last = done
		calls++
	}))
	if err != nil || last != 100 || calls == 0 {
		t.Errorf("got last progress %d after %d calls, %v; want 100", last, calls, err)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		retries int
		check   func(t *testing.T, got int, err error, logged string)
	}{
		{
			name:    "with a retry",
			retries: 1,
			check: func(t *testing.T, got int, err error, logged string) {
				if err != nil || got != 42 {
					t.Errorf("got %d, %v; want 42, nil", got, err)
				}
				if !strings.Contains(logged, "worker died") || !strings.Contains(logged, "exited with code 7") {
					t.Errorf("log: got %q, want the worker's death and its cause", logged)
				}
			},
		},
		{
			name:    "without retries",
			retries: 0,
			check: func(t *testing.T, got int, err error, logged string) {
				if exit, ok := errors.AsType[*mp.ExitError](err); !ok || exit.ExitCode() != 7 {
					t.Errorf("got %v, want an *mp.ExitError with code 7", err)
				}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var log bytes.Buffer
			var mu sync.Mutex
			logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &log}, nil))
			p := newPool(t, mp.PoolOptions{Workers: 1, Retries: tt.retries, Logger: logger})
			got, err := mp.Apply(bounded(t, 30*time.Second), p, poolOnce, filepath.Join(dir, fmt.Sprint("marker", i)))
			mu.Lock()
			logged := log.String()
			mu.Unlock()
			tt.check(t, got, err, logged)
		})
	}
}
