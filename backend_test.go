package mp_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// loopback is a Backend that runs each task with RunTask on another local
// pool, as a worker host does with the tasks a broker brings it: the
// seam between the calls and where their tasks run, without a network.
type loopback struct {
	host *mp.Pool
	n    int

	mu      sync.Mutex
	cancels map[*mp.Task]context.CancelFunc
	runs    int
}

func (b *loopback) Capacity() int { return b.n }

func (b *loopback) Run(t *mp.Task) {
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	if b.cancels == nil {
		b.cancels = make(map[*mp.Task]context.CancelFunc)
	}
	b.cancels[t] = cancel
	b.runs++
	b.mu.Unlock()
	go func() {
		out, err := mp.RunTask(ctx, b.host, t)
		b.mu.Lock()
		delete(b.cancels, t)
		b.mu.Unlock()
		cancel()
		t.Done(out, err)
	}()
}

func (b *loopback) Cancel(t *mp.Task) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cancel := b.cancels[t]; cancel != nil {
		cancel()
	}
}

func (b *loopback) Close() error { return nil }

func newLoopbackPool(t *testing.T, opts mp.PoolOptions) (*mp.Pool, *loopback) {
	t.Helper()
	host := newPool(t, opts)
	b := &loopback{host: host, n: 4}
	p := newPool(t, mp.PoolOptions{Backend: b})
	return p, b
}

func TestBackendCalls(t *testing.T) {
	// Every call works unchanged on a pool whose tasks a Backend runs.
	t.Parallel()
	p, b := newLoopbackPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 60*time.Second)
	in := seq(500)
	for _, chunk := range []int{0, 1, 7} {
		got, err := mp.Map(ctx, p, poolSquare, in, mp.ChunkSize(chunk))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != i*i {
				t.Fatalf("chunk %d: item %d: got %d", chunk, i, v)
			}
		}
	}
	n := 0
	for v, err := range mp.ImapUnordered(ctx, p, poolSquare, slices.Values(in), mp.ChunkSize(3)) {
		if err != nil {
			t.Fatal(err)
		}
		n += v
	}
	if want := 499 * 500 * 999 / 6; n != want {
		t.Errorf("ImapUnordered: sum %d, want %d", n, want)
	}
	i := 0
	for v, err := range mp.Imap(ctx, p, poolSquare, slices.Values(in[:50])) {
		if err != nil || v != i*i {
			t.Fatalf("Imap item %d: %d, %v", i, v, err)
		}
		i++
	}
	if v, err := mp.Apply(ctx, p, poolSquare, 12); v != 144 || err != nil {
		t.Errorf("Apply: %d, %v", v, err)
	}
	if v, err := mp.ApplyAsync(ctx, p, poolSquare, 13).Wait(ctx); v != 169 || err != nil {
		t.Errorf("ApplyAsync: %d, %v", v, err)
	}
	b.mu.Lock()
	runs := b.runs
	b.mu.Unlock()
	if runs == 0 {
		t.Error("the backend ran nothing")
	}
	if s := p.Stats(); s.TasksDone < 1500 || s.Workers != 4 {
		t.Errorf("Stats: %+v", s)
	}
}

func TestBackendErrors(t *testing.T) {
	// A task's error, panic, crash and timeout on the worker host come back
	// with the types a local pool gives.
	t.Parallel()
	p, _ := newLoopbackPool(t, mp.PoolOptions{Workers: 2, TaskTimeout: 2 * time.Second})
	ctx := bounded(t, 60*time.Second)
	for _, k := range crashKinds {
		t.Run(k.name, func(t *testing.T) {
			x := 49 + 50*indexOfKind(k.name)
			_, err := mp.Apply(ctx, p, poolCrash, x)
			if !k.check(err) {
				t.Errorf("got %v (%T), want %s", err, err, k.want)
			}
		})
	}
	// A chunk with a crash in it: the others succeed.
	got, errs, err := mp.MapAll(ctx, p, poolCrash, seq(100), mp.ChunkSize(10))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, bad := crashKindOf(i); bad != (errAt(errs, i) != nil) || !bad && got[i] != i*i {
			t.Errorf("item %d: %d, %v", i, got[i], errAt(errs, i))
		}
	}
	// A call whose ctx ends fails with its cause, and the pool goes on.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := mp.Apply(short, p, poolSlow, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Apply past its deadline: got %v", err)
	}
	if v, err := mp.Apply(ctx, p, poolSquare, 3); v != 9 || err != nil {
		t.Errorf("Apply after: %d, %v", v, err)
	}
}

func indexOfKind(name string) int {
	for i, k := range crashKinds {
		if k.name == name {
			return i
		}
	}
	return -1
}
