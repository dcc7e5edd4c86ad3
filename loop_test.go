package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// spinUntilDone runs on the CPU, with no system call, until its context
// ends or limit passes, and returns its worker's PID with the context's
// error. A worker runs one goroutine at a time by default, so it reads its
// parent's cancel only if the runtime preempts this loop.
var spinUntilDone = mp.Register("test.spin.until-done", func(ctx context.Context, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit) // time.Now makes no system call
	n := 0
	for ctx.Err() == nil {
		if n++; n%1024 == 0 && time.Now().After(deadline) {
			return os.Getpid(), fmt.Errorf("the context did not end within %v", limit)
		}
	}
	return os.Getpid(), ctx.Err()
})

// warmUp runs quick tasks, so that the worker and the parent pass
// messages just before the test's task, as in a busy pool.
func warmUp(t *testing.T, ctx context.Context, p *mp.Pool) int {
	t.Helper()
	var pid int
	for range 50 {
		got, err := mp.Apply(ctx, p, poolSlow, 0)
		if err != nil {
			t.Fatal(err)
		}
		pid = got
	}
	return pid
}

// TestCancelReachesSpinningTask cancels a task that runs on the CPU and
// polls its context: the cancel must reach it, so that it returns and its
// worker lives on, rather than being killed after the grace.
func TestCancelReachesSpinningTask(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 60*time.Second)
	for round := range 3 {
		pid := warmUp(t, ctx, p)
		call, cancel := context.WithCancel(ctx)
		stop := time.AfterFunc(30*time.Millisecond, cancel)
		start := time.Now()
		_, err := mp.Apply(call, p, spinUntilDone, 20*time.Second)
		stop.Stop()
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: got %v after %v, want context.Canceled", round, err, time.Since(start))
		}
		if st := p.Stats(); st.Restarts != 0 {
			t.Fatalf("round %d: the worker was replaced (%v): the spinning task never saw its cancel", round, st.RestartCauses)
		}
		if again := warmUp(t, ctx, p); again != pid {
			t.Fatalf("round %d: worker %d, then %d", round, pid, again)
		}
	}
}

// TestTaskTimeoutReachesSpinningTask is the same for a task that runs past
// the pool's TaskTimeout: the timer in the worker must fire while the task
// holds the CPU.
func TestTaskTimeoutReachesSpinningTask(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: 50 * time.Millisecond})
	ctx := bounded(t, 60*time.Second)
	for round := range 3 {
		warmUp(t, ctx, p)
		_, err := mp.Apply(ctx, p, spinUntilDone, 20*time.Second)
		if !errors.Is(err, mp.ErrTaskTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: got %v, want ErrTaskTimeout and DeadlineExceeded", round, err)
		}
		if st := p.Stats(); st.Restarts != 0 {
			t.Fatalf("round %d: the worker was replaced (%v): the spinning task never saw its timeout", round, st.RestartCauses)
		}
	}
}

// goexitIf calls runtime.Goexit if x is 1, and otherwise returns its
// worker's PID.
var goexitIf = mp.Register("test.loop.goexit-if", func(_ context.Context, x int) (int, error) {
	if x == 1 {
		runtime.Goexit()
	}
	return os.Getpid(), nil
})

// TestGoexitFailsOnlyItsTask: a task that calls runtime.Goexit ends the
// goroutine it runs on in its worker. It fails, alone, with an error that
// says so, and the same worker runs the next tasks.
func TestGoexitFailsOnlyItsTask(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 60*time.Second)
	pid, err := mp.Apply(ctx, p, goexitIf, 0)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		if _, err := mp.Apply(ctx, p, goexitIf, 1); err == nil || !strings.Contains(err.Error(), "runtime.Goexit") {
			t.Fatalf("round %d: got %v, want an error that names runtime.Goexit", round, err)
		}
		got, errs, err := mp.MapAll(ctx, p, goexitIf, []int{0, 1, 0, 0}, mp.ChunkSize(1))
		if err != nil {
			t.Fatalf("round %d: MapAll: %v", round, err)
		}
		for i, e := range errs {
			if (e != nil) != (i == 1) {
				t.Fatalf("round %d: MapAll's errors are %v, want item 1's alone", round, errs)
			}
		}
		if got[0] != pid || got[2] != pid || got[3] != pid {
			t.Fatalf("round %d: MapAll ran on %v, want worker %d throughout", round, got, pid)
		}
	}
	if st := p.Stats(); st.Restarts != 0 {
		t.Errorf("the worker was replaced: %v", st.RestartCauses)
	}
}

// TestGoexitInSpawn: a process started by Spawn runs its task on its main
// goroutine, which runtime.Goexit ends; the process still reports the
// failure, and exits. (A spare runs its task the same way, once it has its
// hello: this test keeps none, as a spare would outlive it.)
func TestGoexitInSpawn(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 60*time.Second)
	pr, err := mp.Spawn(ctx, goexitIf, 1, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Result(ctx); err == nil || !strings.Contains(err.Error(), "runtime.Goexit") {
		t.Errorf("got %v, want an error that names runtime.Goexit", err)
	}
	if _, err := pr.Wait(ctx); ctx.Err() != nil || err == nil || !strings.Contains(err.Error(), "runtime.Goexit") {
		t.Fatalf("Wait: got %v, want the Goexit error once the process exits", err)
	}
}
