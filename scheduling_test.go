package mp_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// schedGate waits until the file at path exists (or its ctx ends); if
// path+".die" exists, its worker exits.
var schedGate = mp.Register("test.sched.gate", func(ctx context.Context, path string) (int, error) {
	for {
		if _, err := os.Stat(path); err == nil {
			return 1, nil
		}
		if _, err := os.Stat(path + ".die"); err == nil {
			os.Exit(3)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
})

func TestApplyDoesNotWaitBehindMap(t *testing.T) {
	// One queue for all calls made an Apply wait for a whole Map; calls
	// now take turns, so it waits for about one of the Map's tasks.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 60*time.Second)
	mapDone := make(chan error, 1)
	durations := make([]time.Duration, 400)
	for i := range durations {
		durations[i] = 5 * time.Millisecond
	}
	go func() {
		_, err := mp.Map(ctx, p, poolSlow, durations, mp.ChunkSize(1))
		mapDone <- err
	}()
	for p.Stats().TasksQueued < 300 { // the Map is under way
		if ctx.Err() != nil {
			t.Fatal("the Map never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if got, err := mp.Apply(ctx, p, poolSquare, 12); err != nil || got != 144 {
		t.Fatalf("Apply: got %d, %v", got, err)
	}
	select {
	case err := <-mapDone:
		t.Fatalf("the Map (%v) finished before the Apply made during it", err)
	default:
	}
	if q := p.Stats().TasksQueued; q < 100 {
		t.Errorf("only %d of the Map's tasks were still queued when the Apply returned", q)
	}
	if err := <-mapDone; err != nil {
		t.Fatal(err)
	}
}

func TestMaxQueued(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, MaxQueued: 2})
	ctx := bounded(t, 60*time.Second)
	gate := filepath.Join(t.TempDir(), "open")
	// The worker holds two tasks (one running, one sent ahead); two more
	// fill the queue.
	var held []*mp.Future[int]
	for range 4 {
		held = append(held, mp.ApplyAsync(ctx, p, schedGate, gate))
	}
	for p.Stats().TasksQueued != 2 {
		if ctx.Err() != nil {
			t.Fatalf("queued: %d, want 2", p.Stats().TasksQueued)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := mp.Apply(ctx, p, poolSquare, 2, mp.NoWait()); !errors.Is(err, mp.ErrQueueFull) {
		t.Errorf("Apply with NoWait on a full queue: got %v, want ErrQueueFull", err)
	}
	if _, err := mp.Map(ctx, p, poolSquare, []int{1, 2}, mp.NoWait()); !errors.Is(err, mp.ErrQueueFull) {
		t.Errorf("Map with NoWait on a full queue: got %v, want ErrQueueFull", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := mp.Apply(short, p, poolSquare, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Apply waiting for room past its deadline: got %v, want DeadlineExceeded", err)
	}
	// A Map longer than the bound queues what fits, and the rest as room is made.
	mapped := make(chan error, 1)
	go func() {
		got, err := mp.Map(ctx, p, poolSquare, seq(10), mp.ChunkSize(1))
		if err == nil && got[9] != 81 {
			err = errors.New("wrong result")
		}
		mapped <- err
	}()
	for range 20 { // while the gate is shut, the Map waits for room
		if q := p.Stats().TasksQueued; q > 2 {
			t.Fatalf("%d tasks queued, over MaxQueued", q)
		}
		select {
		case err := <-mapped:
			t.Fatalf("the Map returned (%v) while the queue was full", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, f := range held {
		if _, err := f.Wait(ctx); err != nil {
			t.Errorf("held task %d: %v", i, err)
		}
	}
	if err := <-mapped; err != nil {
		t.Errorf("Map through a bounded queue: %v", err)
	}
	if got, err := mp.Apply(ctx, p, poolSquare, 3, mp.NoWait()); err != nil || got != 9 {
		t.Errorf("Apply with NoWait on an empty queue: got %d, %v", got, err)
	}
}

func TestCrashLoopRecovers(t *testing.T) {
	// A pool whose workers failed to start five times in a row was broken
	// for good; now it fails calls fast while starts fail, and recovers.
	t.Parallel()
	poison := filepath.Join(t.TempDir(), "poison")
	p := newPool(t, mp.PoolOptions{Workers: 1, Init: mp.Bind(poolInitPoisoned, poison)})
	ctx := bounded(t, 60*time.Second)
	if err := os.WriteFile(poison, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mp.Apply(ctx, p, procExit, 3); err == nil {
		t.Fatal("the worker did not die")
	}
	if _, err := mp.Apply(ctx, p, poolSquare, 2); !errors.Is(err, mp.ErrWorkerStart) {
		t.Fatalf("while Init fails: got %v, want ErrWorkerStart", err)
	}
	start := time.Now()
	if _, err := mp.Apply(ctx, p, poolSquare, 2); !errors.Is(err, mp.ErrWorkerStart) {
		t.Fatalf("while Init fails: got %v, want ErrWorkerStart", err)
	}
	t.Logf("a call on a broken pool failed in %v", time.Since(start))
	if err := os.Remove(poison); err != nil { // the database is back
		t.Fatal(err)
	}
	for {
		got, err := mp.Apply(ctx, p, poolSquare, 5)
		if err == nil && got == 25 {
			break
		}
		if !errors.Is(err, mp.ErrWorkerStart) || ctx.Err() != nil {
			t.Fatalf("after Init works again: got %d, %v; want the pool to recover", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if w := p.Stats().Workers; w != 1 {
		t.Errorf("workers: got %d, want 1", w)
	}
}

func TestProgressWithinChunk(t *testing.T) {
	// Progress moved once per chunk; a chunk's worker now reports the items
	// it has done every 100ms.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	durations := make([]time.Duration, 20)
	for i := range durations {
		durations[i] = 40 * time.Millisecond
	}
	var calls, last int
	_, err := mp.Map(bounded(t, 60*time.Second), p, poolSlow, durations, mp.ChunkSize(20), mp.Progress(func(done, total int) {
		if done <= last || total != 20 {
			t.Errorf("progress (%d, %d) after %d", done, total, last)
		}
		last = done
		calls++
	}))
	if err != nil {
		t.Fatal(err)
	}
	if calls < 3 || last != 20 {
		t.Errorf("Progress was called %d times, last with %d; want several calls while the chunk runs, the last with 20", calls, last)
	}
}

func TestTaskTimeoutTellsApart(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: 200 * time.Millisecond})
	ctx := bounded(t, 60*time.Second)
	for _, tt := range []struct {
		name string
		f    mp.Func[time.Duration, int]
	}{{"killed", poolStubborn}, {"cooperative", poolSlow}} {
		_, err := mp.Apply(ctx, p, tt.f, time.Hour)
		if !errors.Is(err, mp.ErrTaskTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s past TaskTimeout: got %v, want ErrTaskTimeout and DeadlineExceeded", tt.name, err)
		}
	}
	p2 := newPool(t, mp.PoolOptions{Workers: 1})
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := mp.Apply(short, p2, poolSlow, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mp.ErrTaskTimeout) {
		t.Errorf("past the caller's deadline: got %v, want DeadlineExceeded and not ErrTaskTimeout", err)
	}
}

func TestBrokenPoolFailsWaitingCalls(t *testing.T) {
	// A call waiting for room in a full queue waited for its own deadline
	// when the pool broke, instead of failing with ErrWorkerStart.
	t.Parallel()
	dir := t.TempDir()
	poison, gate := filepath.Join(dir, "poison"), filepath.Join(dir, "gate")
	p := newPool(t, mp.PoolOptions{Workers: 1, MaxQueued: 1, Init: mp.Bind(poolInitPoisoned, poison)})
	ctx := bounded(t, 60*time.Second)
	for range 3 { // two in the worker, one queued: full
		mp.ApplyAsync(ctx, p, schedGate, gate)
	}
	for p.Stats().TasksQueued != 1 {
		if ctx.Err() != nil {
			t.Fatal("the queue never filled")
		}
		time.Sleep(time.Millisecond)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := mp.Apply(ctx, p, poolSquare, 2)
		waiting <- err
	}()
	for _, f := range []string{poison, gate + ".die"} { // Init fails from now on; the worker dies
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-waiting; !errors.Is(err, mp.ErrWorkerStart) {
		t.Errorf("a call waiting for room: got %v, want ErrWorkerStart", err)
	}
}
