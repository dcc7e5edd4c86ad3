package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
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
