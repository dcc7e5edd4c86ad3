package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
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
			if !isExit || exit.ExitCode() != 2 || !bytes.Contains(exit.Output, []byte("unlock of unlocked mutex")) {
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

var (
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
	poolPanic = mp.Register("test.pool.panic", func(ctx context.Context, x int) (int, error) {
		if x < 0 {
			panic(fmt.Sprintf("negative: %d", x))
		}
		return os.Getpid(), nil
	})
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
	poolAlloc     = mp.Register("test.pool.alloc", func(ctx context.Context, mb int) (int, error) {
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
	poolEcho = mp.Register("test.pool.echo", func(ctx context.Context, b []byte) ([]byte, error) { return b, nil })
	poolRSS  = mp.Register("test.pool.rss", func(ctx context.Context, _ int) (int64, error) {
		b, err := os.ReadFile("/proc/self/statm")
		if err != nil {
			return 0, err
		}
		var size, rss int64
		_, err = fmt.Sscan(string(b), &size, &rss)
		return rss * int64(os.Getpagesize()), err
	})
	poolBig = mp.Register("test.pool.big", func(ctx context.Context, n int) ([]byte, error) { return make([]byte, n), nil })
)

var (
	initValue string
	keep      [][]byte
)

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestImapOrder(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 30*time.Second)
	var got []int
	for v, err := range mp.Imap(ctx, p, poolSquare, slices.Values(seq(500)), mp.ChunkSize(3)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	for i, v := range got {
		if v != i*i {
			t.Fatalf("got[%d] = %d, want %d", i, v, i*i)
		}
	}
	if len(got) != 500 {
		t.Fatalf("got %d results, want 500", len(got))
	}
	var un []int
	for v, err := range mp.ImapUnordered(ctx, p, poolSquare, slices.Values(seq(500))) {
		if err != nil {
			t.Fatal(err)
		}
		un = append(un, v)
	}
	slices.Sort(un)
	if !slices.Equal(un, got) {
		t.Errorf("ImapUnordered: got %v, want the squares of 0..499", un)
	}
}

func TestImapLazyEndless(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 30*time.Second)
	read := 0
	endless := func(yield func(int) bool) {
		for i := 0; ; i++ {
			read++
			if !yield(i) {
				return
			}
		}
	}
	n := 0
	for v, err := range mp.Imap(ctx, p, poolSquare, endless) {
		if err != nil || v != n*n {
			t.Fatalf("item %d: got %d, %v", n, v, err)
		}
		if n++; n == 100 {
			break
		}
	}
	// At most a window of 2 tasks per worker, twice over, is in flight; as
	// many may be done but not yet yielded, and as many more parked until
	// the results before them are yielded.
	if window := 2 * 2 * 2; read > 100+3*window+1 {
		t.Errorf("read %d items of the input for 100 results, want a bounded read-ahead", read)
	}
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

// TestImapBreakFreesWorkers runs alone: it counts goroutines and children.
func TestImapBreakFreesWorkers(t *testing.T) {
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 60*time.Second)
	waitWorkers(t, p, 2)
	baseGoroutines := mpGoroutines()
	basePIDs, _ := children(t)
	for _, f := range []mp.Func[time.Duration, int]{poolSlow, poolStubborn} {
		in := func(yield func(time.Duration) bool) {
			if !yield(0) {
				return
			}
			for yield(time.Hour) {
			}
		}
		start := time.Now()
		for _, err := range mp.Imap(ctx, p, f, in) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		st := p.Stats()
		if st.TasksRunning != 0 || st.TasksQueued != 0 {
			t.Errorf("%s: after break: %d tasks running, %d queued; want none", f, st.TasksRunning, st.TasksQueued)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: break took %v", f, d)
		}
	}
	// The stubborn tasks' workers were killed; wait for their replacements,
	// then for the goroutines of the dead ones to end.
	waitWorkers(t, p, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, zombies := children(t)
		g := mpGoroutines()
		if g <= baseGoroutines && len(pids) == len(basePIDs) && len(zombies) == 0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("got %d goroutines and children %v (zombies %v), want %d goroutines and %d children; goroutines:\n%s",
				g, pids, zombies, baseGoroutines, len(basePIDs), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestApplyPanicWorkerLives(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 30*time.Second)
	pid, err := mp.Apply(ctx, p, poolPanic, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mp.Apply(ctx, p, poolPanic, -5)
	pe, ok := errors.AsType[*mp.PanicError](err)
	if !ok || pe.Value != "negative: -5" || !strings.Contains(string(pe.Stack), "pool_test.go") {
		t.Fatalf("got %v, want a *mp.PanicError with the value and the stack", err)
	}
	te, ok := errors.AsType[*mp.TaskError](err)
	if !ok || te.Index != -1 || te.Func != "test.pool.panic" {
		t.Errorf("got %v, want a *mp.TaskError with index -1", err)
	}
	again, err := mp.Apply(ctx, p, poolPanic, 2)
	if err != nil || again != pid {
		t.Errorf("after the panic: got pid %d, %v; want the same worker %d", again, err, pid)
	}
}

func TestApplyAsync(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 30*time.Second)
	var futures []*mp.Future[int]
	for i := range 50 {
		futures = append(futures, mp.ApplyAsync(ctx, p, poolSquare, i))
	}
	for i, f := range futures {
		select {
		case <-f.Done():
		case <-ctx.Done():
			t.Fatal("future not done in time")
		}
		if v, err := f.Wait(ctx); err != nil || v != i*i {
			t.Errorf("future %d: got %d, %v; want %d", i, v, err, i*i)
		}
	}
}

func TestCancelKillsPromptly(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx, cancel := context.WithTimeout(bounded(t, 30*time.Second), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := mp.Map(ctx, p, poolStubborn, []time.Duration{time.Hour, time.Hour, time.Hour}, mp.ChunkSize(1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Map returned after %v, want soon after its 300ms deadline", d)
	}
	got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, []int{3})
	if err != nil || got[0] != 9 {
		t.Errorf("after the cancel: got %v, %v", got, err)
	}
}

func TestTaskTimeoutCooperative(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: 200 * time.Millisecond})
	ctx := bounded(t, 30*time.Second)
	pid, err := mp.Apply(ctx, p, poolSlow, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mp.Apply(ctx, p, poolSlow, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	// The function heeded its context, so its worker lives on.
	if again, err := mp.Apply(ctx, p, poolSlow, 0); err != nil || again != pid {
		t.Errorf("got pid %d, %v; want the same worker %d", again, err, pid)
	}
	_, err = mp.Apply(ctx, p, poolStubborn, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stubborn: got %v, want context.DeadlineExceeded", err)
	}
	if st := p.Stats(); st.RestartCauses["timeout"] != 1 {
		t.Errorf("restart causes: got %v, want one timeout", st.RestartCauses)
	}
}

func TestInit(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2, Init: mp.Bind(poolInitOK, "configured")})
	got, err := mp.Map(bounded(t, 30*time.Second), p, poolInitValue, []int{1, 2, 3, 4}, mp.ChunkSize(1))
	if err != nil || !slices.Equal(got, []string{"configured", "configured", "configured", "configured"}) {
		t.Errorf("got %v, %v; want every worker configured", got, err)
	}

	_, err = mp.NewPool(bounded(t, 30*time.Second), mp.PoolOptions{Workers: 2, Init: mp.Bind(poolInitFail, "x")})
	if !errors.Is(err, mp.ErrWorkerStart) || !strings.Contains(err.Error(), "init refused: x") {
		t.Errorf("got %v, want an ErrWorkerStart carrying Init's error", err)
	}
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
	_, err := mp.Apply(ctx, p, poolBig, 2<<20)
	if !errors.Is(err, mp.ErrMessageTooLarge) {
		t.Errorf("oversized result: got %v, want ErrMessageTooLarge", err)
	}
	_, err = mp.Apply(ctx, p, poolEcho, make([]byte, 2<<20))
	if !errors.Is(err, mp.ErrMessageTooLarge) {
		t.Errorf("oversized argument: got %v, want ErrMessageTooLarge", err)
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
	if _, err := mp.Map(ctx, p, poolSquare, []int{1}); !errors.Is(err, mp.ErrPoolClosed) {
		t.Errorf("Map: got %v, want ErrPoolClosed", err)
	}
	for _, err := range mp.Imap(ctx, p, poolSquare, slices.Values([]int{1})) {
		if !errors.Is(err, mp.ErrPoolClosed) {
			t.Errorf("Imap: got %v, want ErrPoolClosed", err)
		}
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

// poolOnce kills its worker the first time it runs for a given marker
// file, and succeeds after.
var poolOnce = mp.Register("test.pool.once", func(ctx context.Context, marker string) (int, error) {
	if _, err := os.Stat(marker); err != nil {
		os.WriteFile(marker, nil, 0o600)
		os.Exit(7)
	}
	return 42, nil
})

func TestRetries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := bounded(t, 30*time.Second)
	var log bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &log}, nil))
	p := newPool(t, mp.PoolOptions{Workers: 1, Retries: 1, Logger: logger})
	if got, err := mp.Apply(ctx, p, poolOnce, filepath.Join(dir, "a")); err != nil || got != 42 {
		t.Errorf("with a retry: got %d, %v; want 42, nil", got, err)
	}
	mu.Lock()
	logged := log.String()
	mu.Unlock()
	if !strings.Contains(logged, "worker died") || !strings.Contains(logged, "exited with code 7") {
		t.Errorf("log: got %q, want the worker's death and its cause", logged)
	}

	q := newPool(t, mp.PoolOptions{Workers: 1})
	_, err := mp.Apply(ctx, q, poolOnce, filepath.Join(dir, "b"))
	if exit, ok := errors.AsType[*mp.ExitError](err); !ok || exit.ExitCode() != 7 {
		t.Errorf("without retries: got %v, want an *mp.ExitError with code 7", err)
	}
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

func TestTaskTimeoutInChunk(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: 300 * time.Millisecond})
	ctx := bounded(t, 60*time.Second)
	// Five items of 100ms in one chunk: 500ms in all, more than the
	// timeout, but each item is within it.
	d := 100 * time.Millisecond
	if _, err := mp.Map(ctx, p, poolStubborn, []time.Duration{d, d, d, d, d}, mp.ChunkSize(5)); err != nil {
		t.Fatalf("a chunk of items each within its timeout: %v", err)
	}
	// One item that ignores its context, in the middle of a chunk.
	in := []time.Duration{0, 0, time.Hour, 0, 0}
	out, errs, err := mp.MapAll(ctx, p, poolStubborn, in, mp.ChunkSize(5))
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		switch {
		case i == 2 && (errs == nil || !errors.Is(errs[2], context.DeadlineExceeded)):
			t.Errorf("item 2: got %v, want context.DeadlineExceeded", errs)
		case i != 2 && (errs[i] != nil || out[i] == 0):
			t.Errorf("item %d: got %d, %v; want a pid", i, out[i], errs[i])
		}
	}
	if st := p.Stats(); st.Restarts != 1 || st.RestartCauses["timeout"] != 1 {
		t.Errorf("restarts: got %d %v, want one, for the timeout", st.Restarts, st.RestartCauses)
	}
}

func TestTaskTimeoutHuge(t *testing.T) {
	t.Parallel()
	// A timeout as good as none must not overflow into an immediate one.
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: math.MaxInt64})
	got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, seq(9), mp.ChunkSize(3))
	if err != nil || got[8] != 64 {
		t.Fatalf("got %v, %v", got, err)
	}
	if st := p.Stats(); st.Restarts != 0 {
		t.Errorf("restarts: got %d %v, want none", st.Restarts, st.RestartCauses)
	}
}
