package mp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var poolPanic = mp.Register("test.pool.panic", func(ctx context.Context, x int) (int, error) {
	if x < 0 {
		panic(fmt.Sprintf("negative: %d", x))
	}
	return os.Getpid(), nil
})

func TestApplyPanicWorkerLives(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 30*time.Second)
	pid, err := mp.Apply(ctx, p, poolPanic, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mp.Apply(ctx, p, poolPanic, -5)
	// The stack runs through the function that panicked, in this file.
	pe, ok := errors.AsType[*mp.PanicError](err)
	if !ok || pe.Value != "negative: -5" || !strings.Contains(string(pe.Stack), "apply_test.go") {
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

// valueCtx is a context of a type that is not comparable: it cannot be a
// map key.
type valueCtx struct {
	context.Context
	tags []string
}

func TestApplyAsyncCancel(t *testing.T) {
	// Cancelling the ctx of many ApplyAsync calls fails the queued and the
	// running ones at once, and leaves calls on other contexts alone; with
	// a ctx of a comparable type (one watch for all) and of another.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	outer := bounded(t, 60*time.Second)
	for _, comparable := range []bool{true, false} {
		base, cancel := context.WithCancel(outer)
		var ctx context.Context = base
		if !comparable {
			ctx = valueCtx{base, []string{"x"}}
		}
		var doomed, kept []*mp.Future[int]
		for range 40 {
			doomed = append(doomed, mp.ApplyAsync(ctx, p, poolSlow, time.Minute))
		}
		for i := range 10 {
			kept = append(kept, mp.ApplyAsync(outer, p, poolSquare, i))
		}
		cancel()
		start := time.Now()
		for _, f := range doomed {
			if _, err := f.Wait(outer); !errors.Is(err, context.Canceled) {
				t.Fatalf("comparable=%v: a cancelled call: got %v", comparable, err)
			}
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("comparable=%v: the cancelled calls took %v to fail", comparable, took)
		}
		for i, f := range kept {
			if v, err := f.Wait(outer); v != i*i || err != nil {
				t.Errorf("comparable=%v: a call on another ctx: %d, %v", comparable, v, err)
			}
		}
	}
	if v, err := mp.Apply(outer, p, poolSquare, 7); v != 49 || err != nil {
		t.Errorf("after: %d, %v", v, err)
	}
}

// TestApplyManyCallers has many goroutines make Apply calls at once, on
// few and on many workers, while ApplyAsync calls keep the same workers
// busy: an Apply's caller reads its own result when its task went to an
// idle worker, and the slot's reader reads otherwise; every result must
// reach its caller, through crashes and cancellations too.
func TestApplyManyCallers(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 3, 16} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			p := newPool(t, mp.PoolOptions{Workers: workers, Worker: mp.WorkerOptions{Stderr: io.Discard}})
			ctx := bounded(t, 90*time.Second)
			var wg sync.WaitGroup
			for g := range 12 {
				wg.Go(func() {
					for i := range 150 {
						switch {
						case g == 0 && i%50 == 25:
							// SIGKILL of its worker: it fails alone.
							if _, err := mp.Apply(ctx, p, poolCrash, 49); !crashKinds[0].check(err) {
								t.Errorf("crash: got %v, want %s", err, crashKinds[0].want)
							}
						case g == 1 && i%10 == 5:
							// Cancelled while its worker runs it.
							cctx, cancel := context.WithTimeout(ctx, time.Millisecond)
							_, err := mp.Apply(cctx, p, poolSlow, time.Hour)
							cancel()
							if !errors.Is(err, context.DeadlineExceeded) {
								t.Errorf("cancelled: got %v, want context.DeadlineExceeded", err)
							}
						case g == 2:
							fs := make([]*mp.Future[int], 5)
							for k := range fs {
								fs[k] = mp.ApplyAsync(ctx, p, poolSquare, k)
							}
							for k, f := range fs {
								if v, err := f.Wait(ctx); v != k*k || err != nil {
									t.Errorf("ApplyAsync(%d): got %d, %v", k, v, err)
								}
							}
						default:
							x := g*1000 + i
							if v, err := mp.Apply(ctx, p, poolSquare, x); v != x*x || err != nil {
								t.Errorf("Apply(%d): got %d, %v", x, v, err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			if st := p.Stats(); st.TasksRunning != 0 || st.TasksQueued != 0 {
				t.Errorf("after the calls: %+v", st)
			}
		})
	}
}
