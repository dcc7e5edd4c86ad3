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
