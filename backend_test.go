package mp_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/seam"
)

// loopback is a backend that runs each batch with RunBatch on another local
// pool, as a worker host does with the tasks a broker brings it: the
// seam between the calls and where their tasks run, without a network.
type loopback struct {
	host *mp.Pool
	n    int

	mu      sync.Mutex
	cancels map[*seam.Batch]context.CancelFunc
	runs    int
}

func (b *loopback) Capacity() int { return b.n }

func (b *loopback) Run(t *seam.Batch) {
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	if b.cancels == nil {
		b.cancels = make(map[*seam.Batch]context.CancelFunc)
	}
	b.cancels[t] = cancel
	b.runs++
	b.mu.Unlock()
	go func() {
		out, err := seam.RunBatch(ctx, b.host, t)
		b.mu.Lock()
		delete(b.cancels, t)
		b.mu.Unlock()
		cancel()
		t.Done(out, err)
	}()
}

func (b *loopback) Cancel(t *seam.Batch) {
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
	p := newBackendPool(t, b)
	return p, b
}

// newBackendPool returns a pool whose batches b runs, as natspool.NewPool
// makes one, closed at the test's end.
func newBackendPool(t *testing.T, b seam.Backend) *mp.Pool {
	t.Helper()
	p, err := seam.NewPool(t.Context(), mp.PoolOptions{}, b)
	if err != nil {
		t.Fatal(err)
	}
	pool := p.(*mp.Pool)
	t.Cleanup(func() { pool.Close() })
	return pool
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
	p, _ := newLoopbackPool(t, mp.PoolOptions{Workers: 2, TaskTimeout: 2 * time.Second, Worker: mp.WorkerOptions{Stderr: io.Discard}})
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

// recorder is a Backend that fails each task at once, and records what the
// pool asked of it: Runs after its first (which cancels the call), and
// whether any Cancel came for a task before its Run returned.
type recorder struct {
	cancel context.CancelFunc

	mu            sync.Mutex
	runs, late    int
	running       map[*seam.Batch]bool
	cancelDuring  bool
	cancelUnknown bool
}

func (r *recorder) Capacity() int { return 4 }

func (r *recorder) Run(t *seam.Batch) {
	r.mu.Lock()
	if r.runs++; r.runs == 1 {
		r.cancel() // the call's ctx ends while Run holds its first task
	} else {
		r.late++
	}
	if r.running == nil {
		r.running = make(map[*seam.Batch]bool)
	}
	r.running[t] = true
	r.mu.Unlock()
	time.Sleep(time.Millisecond) // a Cancel that did not wait for Run would come now
	r.mu.Lock()
	r.running[t] = false
	r.mu.Unlock()
	go t.Done(nil, errors.New("ran on the backend"))
}

func (r *recorder) Cancel(t *seam.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	running, known := r.running[t]
	r.cancelDuring = r.cancelDuring || running
	r.cancelUnknown = r.cancelUnknown || !known
}

func (r *recorder) Close() error { return nil }

func TestBackendCancelledMap(t *testing.T) {
	// A Map whose ctx ends while its tasks go to a backend: the tasks
	// queued after that are not handed to the backend (at most the 4 it
	// held), the items not run fail with the ctx's error, and no Cancel
	// comes for a task before its Run has returned.
	ctx, cancel := context.WithCancel(bounded(t, 60*time.Second))
	r := &recorder{cancel: cancel}
	p := newBackendPool(t, r)
	in := make([]int, 200_000)
	_, errs, err := mp.MapAll(ctx, p, poolSquare, in, mp.ChunkSize(100))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("MapAll: %v, want context.Canceled", err)
	}
	cancelled := 0
	for _, e := range errs {
		if errors.Is(e, context.Canceled) {
			cancelled++
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.late > 4 {
		t.Errorf("%d tasks went to the backend after the call's ctx ended, want at most the 4 it held", r.late)
	}
	if cancelled < len(in)-5*100 {
		t.Errorf("%d items failed with the ctx's error, want all but those of 5 tasks at most", cancelled)
	}
	if r.cancelDuring || r.cancelUnknown {
		t.Errorf("a Cancel came before its task's Run returned (during %v, before %v)", r.cancelDuring, r.cancelUnknown)
	}
}
