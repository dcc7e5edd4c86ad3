package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// crashKind is one way an item of poolCrash fails: what the task does in
// its worker, and what its caller must get.
type crashKind struct {
	name  string
	do    func()                          // in the worker; it returns only if the worker lives
	fail  func(ctx context.Context) error // in the worker, if set, after do: the item's error
	want  string                          // the error the caller must get, for messages
	check func(err error) bool
	cause string // the restart cause Stats must count; "" if the worker lives
}

// crashKinds are taken in turn by poolCrash's items 49, 99, 149 and so on.
// TestPoolCloseLeavesNothing and TestConcurrentCallsAndClose run few items,
// which reach the first kinds only: append new kinds at the end.
var crashKinds = []crashKind{
	{
		name: "SIGKILL of self",
		do:   func() { killSelf(); select {} },
		want: "an *mp.ExitError for SIGKILL",
		check: func(err error) bool {
			exit, ok := errors.AsType[*mp.ExitError](err)
			return ok && exit.Signal() == syscall.SIGKILL
		},
		cause: "signal",
	},
	{
		name:  "os.Exit(1)",
		do:    func() { os.Exit(1) },
		want:  "an *mp.ExitError with code 1",
		check: func(err error) bool { exit, ok := errors.AsType[*mp.ExitError](err); return ok && exit.ExitCode() == 1 },
		cause: "exit",
	},
	{
		name: "fatal runtime error",
		do: func() {
			var mu sync.Mutex
			mu.Unlock() // fatal error: sync: unlock of unlocked mutex
		},
		want: "an *mp.ExitError with code 2 and the fatal error",
		check: func(err error) bool {
			exit, ok := errors.AsType[*mp.ExitError](err)
			return ok && exit.ExitCode() == 2 && bytes.Contains(exit.Output, []byte("unlock of unlocked mutex"))
		},
		cause: "exit",
	},
	{
		name: "endless loop",
		do: func() {
			for {
			}
		},
		want:  "context.DeadlineExceeded",
		check: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
		cause: "timeout",
	},
	{
		name: "panic",
		do:   func() { panic("crash matrix") },
		want: `an *mp.PanicError with value "crash matrix"`,
		check: func(err error) bool {
			pe, ok := errors.AsType[*mp.PanicError](err)
			return ok && pe.Value == "crash matrix"
		},
	},
	{
		name:  "os.Exit(3)",
		do:    func() { os.Exit(3) },
		want:  "an *mp.ExitError with code 3",
		check: func(err error) bool { exit, ok := errors.AsType[*mp.ExitError](err); return ok && exit.ExitCode() == 3 },
		cause: "exit",
	},
	{
		name: "returns ctx.Err() at its timeout",
		do:   func() {},
		fail: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
		want: "ErrTaskTimeout",
		check: func(err error) bool {
			return errors.Is(err, mp.ErrTaskTimeout) && errors.Is(err, context.DeadlineExceeded)
		},
	},
}

// crashKindOf returns the crashKind of poolCrash's item x, if it fails.
func crashKindOf(x int) (crashKind, bool) {
	if x%50 != 49 {
		return crashKind{}, false
	}
	return crashKinds[(x/50)%len(crashKinds)], true
}

// poolCrash fails every 50th item, mostly by destroying its worker, in each
// of the ways of crashKinds in turn, and squares the others.
var poolCrash = mp.Register("test.pool.crash", func(ctx context.Context, x int) (int, error) {
	if k, ok := crashKindOf(x); ok {
		k.do()
		if k.fail != nil {
			return 0, k.fail(ctx)
		}
	}
	return x * x, nil
})

// repeatedPhrase returns a phrase that msg says twice in a row, as in
// "a: b: b", or "".
func repeatedPhrase(msg string) string {
	parts := strings.Split(msg, ": ")
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			return parts[i]
		}
	}
	return ""
}

func TestRepeatedPhrase(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ msg, want string }{
		{"mp: task timeout: context deadline exceeded: context deadline exceeded", "context deadline exceeded"},
		{"mp: f[3]: task timeout: context deadline exceeded", ""},
		{"mp: f[3]: a: b: a", ""},
	} {
		if got := repeatedPhrase(tt.msg); got != tt.want {
			t.Errorf("repeatedPhrase(%q): got %q, want %q", tt.msg, got, tt.want)
		}
	}
}

func TestMapSquares(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	in := seq(1000)
	for _, chunk := range []int{0, 1, 7, 1000} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			t.Parallel()
			got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, in, mp.ChunkSize(chunk))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(in) {
				t.Fatalf("got %d results, want %d", len(got), len(in))
			}
			for i, v := range got {
				if v != i*i {
					t.Fatalf("got[%d] = %d, want %d", i, v, i*i)
				}
			}
		})
	}
}

func TestMapAsync(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 60*time.Second)
	t.Run("same as Map", func(t *testing.T) {
		in := seq(500)
		want, err := mp.Map(ctx, p, poolSquare, in, mp.ChunkSize(7))
		if err != nil {
			t.Fatal(err)
		}
		fu := mp.MapAsync(ctx, p, poolSquare, in, mp.ChunkSize(7))
		got, err := fu.Wait(ctx)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("got %v, %v; want Map's %d results", len(got), err, len(want))
		}
		select {
		case <-fu.Done():
		default:
			t.Error("Done is not closed after Wait returned")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		gate := filepath.Join(t.TempDir(), "never")
		cctx, cancel := context.WithCancel(ctx)
		fu := mp.MapAsync(cctx, p, schedGate, []string{gate, gate, gate})
		cancel()
		select {
		case <-fu.Done():
		case <-ctx.Done():
			t.Fatal("a cancelled MapAsync did not finish")
		}
		if _, err := fu.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
	t.Run("a task's error", func(t *testing.T) {
		_, err := mp.MapAsync(ctx, p, exampleSqrt, []float64{4, -1, 9}).Wait(ctx)
		if te, ok := errors.AsType[*mp.TaskError](err); !ok || te.Index != 1 {
			t.Errorf("got %v, want a *mp.TaskError for index 1", err)
		}
	})
}

func TestMapCrashMatrix(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2, TaskTimeout: time.Second, Worker: mp.WorkerOptions{Stderr: io.Discard}})
	in := seq(2000)
	start := time.Now()
	out, errs, err := mp.MapAll(bounded(t, 90*time.Second), p, poolCrash, in)
	if err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	t.Logf("2000 tasks with 40 crashes in %v; stats %+v", time.Since(start), st)
	if len(out) != len(in) || errs != nil && len(errs) != len(in) {
		t.Fatalf("got %d results and %d errors, want %d", len(out), len(errs), len(in))
	}

	t.Run("other items", func(t *testing.T) {
		for i := range in {
			if _, ok := crashKindOf(i); ok {
				continue
			}
			if e := errAt(errs, i); e != nil || out[i] != i*i {
				t.Errorf("item %d: got %d, %v; want %d, nil", i, out[i], e, i*i)
			}
		}
	})
	// A worker that died was replaced, at least once per item that killed
	// it: a chunk that holds a crashing item is split and run again.
	crashesByCause := map[string]int{}
	for i := range in {
		if k, ok := crashKindOf(i); ok && k.cause != "" {
			crashesByCause[k.cause]++
		}
	}
	for _, k := range crashKinds {
		t.Run(k.name, func(t *testing.T) {
			n := 0
			for i := range in {
				if ki, ok := crashKindOf(i); !ok || ki.name != k.name {
					continue
				}
				n++
				e := errAt(errs, i)
				if te, ok := errors.AsType[*mp.TaskError](e); !ok || te.Index != i {
					t.Errorf("item %d: got %v, want a *mp.TaskError with index %d", i, e, i)
					continue
				}
				if !k.check(e) {
					t.Errorf("item %d: got %v, want %s", i, e, k.want)
				}
				if p := repeatedPhrase(e.Error()); p != "" {
					t.Errorf("item %d: got %q, which says %q twice in a row", i, e, p)
				}
			}
			if n == 0 {
				t.Fatalf("no item of %d crashes this way", len(in))
			}
			if k.cause != "" && st.RestartCauses[k.cause] < crashesByCause[k.cause] {
				t.Errorf("restarts for %q: got %d, want at least %d, one per item that crashed so", k.cause, st.RestartCauses[k.cause], crashesByCause[k.cause])
			}
		})
	}

	waitWorkers(t, p, 2)
	got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, []int{1, 2, 3})
	if err != nil || !slices.Equal(got, []int{1, 4, 9}) {
		t.Errorf("after the crashes: got %v, %v; want [1 4 9]", got, err)
	}
}
