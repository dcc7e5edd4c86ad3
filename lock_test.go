package mp_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type lockJob struct {
	L *mp.Lock
	V *mp.Value[int64]
	N int
}

var (
	// lockHold takes the lock and keeps it until killed.
	lockHold = mp.Register("test.lock.hold", func(ctx context.Context, j lockJob) (int, error) {
		if err := j.L.Lock(ctx); err != nil {
			return 0, err
		}
		time.Sleep(time.Hour)
		return 0, nil
	})
	// lockCount adds 1 to the Value N times: under its lock (Update), or,
	// with a negative N, with a plain load and store, losing updates.
	lockCount = mp.Register("test.lock.count", func(ctx context.Context, j lockJob) (int, error) {
		if j.N < 0 {
			for range -j.N {
				j.V.Store(j.V.Load() + 1)
			}
			return 0, nil
		}
		for range j.N {
			if err := j.V.Update(ctx, func(v *int64) { *v++ }); err != nil {
				return 0, err
			}
		}
		return 0, nil
	})
)

func TestLockOwnerDied(t *testing.T) {
	t.Parallel()
	l, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := bounded(t, 30*time.Second)
	p, err := mp.Spawn(ctx, lockHold, lockJob{L: l}, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for { // until the child holds it
		ok, err := l.TryLock()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		l.Unlock()
		if ctx.Err() != nil {
			t.Fatal("the child never took the lock")
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Unlock(); err == nil || !strings.Contains(err.Error(), "held by process") {
		t.Errorf("Unlock of a lock another process holds: got %v", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = l.Lock(ctx)
	took := time.Since(start)
	if !errors.Is(err, mp.ErrOwnerDied) {
		t.Fatalf("Lock after its holder died: got %v, want ErrOwnerDied", err)
	}
	if took > time.Second {
		t.Errorf("the lock of a dead holder was taken over after %v, want within 1s", took)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("Unlock after taking over: %v", err)
	}
	if err := l.Unlock(); err == nil || !strings.Contains(err.Error(), "unlocked") {
		t.Errorf("Unlock of an unlocked lock: got %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	l.Lock(ctx)
	if err := l.Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock of a held lock past the deadline: got %v", err)
	}
	l.Unlock()
	p.Wait(ctx)
}

func TestValueCounter(t *testing.T) {
	// Four processes add to one Value under its lock: none is lost.
	t.Parallel()
	v, err := mp.NewValue[int64](0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := bounded(t, 60*time.Second)
	const each = 5000
	var procs []*mp.Process[int]
	for range 4 {
		p, err := mp.Spawn(ctx, lockCount, lockJob{V: v, N: each}, mp.WorkerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := v.Load(); got != 4*each {
		t.Errorf("got %d, want %d", got, 4*each)
	}
}

func TestValueOps(t *testing.T) {
	t.Parallel()
	i32, _ := mp.NewValue[int32](-5)
	defer i32.Close()
	if got := i32.Add(-3); got != -8 || i32.Load() != -8 {
		t.Errorf("int32: got %d", got)
	}
	if !i32.CompareAndSwap(-8, 7) || i32.CompareAndSwap(-8, 9) || i32.Load() != 7 {
		t.Errorf("int32 CompareAndSwap: %d", i32.Load())
	}
	f, _ := mp.NewValue(1.5)
	defer f.Close()
	if got := f.Add(0.25); got != 1.75 {
		t.Errorf("float64 Add: got %v", got)
	}
	u, _ := mp.NewValue[uint32](1)
	defer u.Close()
	u.Store(1 << 31)
	if got := u.Load(); got != 1<<31 {
		t.Errorf("uint32: got %d", got)
	}
	f32, _ := mp.NewValue[float32](-2)
	defer f32.Close()
	if got := f32.Add(0.5); got != -1.5 {
		t.Errorf("float32: got %v", got)
	}
	if err := f32.Update(t.Context(), func(x *float32) { *x *= 2 }); err != nil || f32.Load() != -3 {
		t.Errorf("Update: %v, %v", err, f32.Load())
	}
}

type signalJob struct {
	E *mp.Event
	S *mp.Semaphore
}

// semRelay waits for the event, then releases a permit.
var semRelay = mp.Register("test.sem.relay", func(ctx context.Context, j signalJob) (int, error) {
	if err := j.E.Wait(ctx); err != nil {
		return 0, err
	}
	return 0, j.S.Release()
})

func TestSemaphoreAndEvent(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	e, err := mp.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s, err := mp.NewSemaphore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := mp.Spawn(ctx, semRelay, signalJob{E: e, S: s}, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.TryAcquire(); ok {
		t.Fatal("a permit before the child released one")
	}
	e.Set()
	if err := s.Acquire(ctx); err != nil {
		t.Fatalf("Acquire of the child's permit: %v", err)
	}
	if _, err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.IsSet() {
		t.Error("the event is not set")
	}
	e.Clear()
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := e.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on a cleared event: got %v", err)
	}
	if err := s.Acquire(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire with no permit: got %v", err)
	}

	b, err := mp.NewBoundedSemaphore(2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	try := func() bool { ok, err := b.TryAcquire(); return ok && err == nil }
	if !try() || !try() || try() || b.Value() != 0 {
		t.Errorf("a bounded semaphore of 2 gave other than 2 permits")
	}
	if b.Release() != nil || b.Release() != nil {
		t.Error("Release within the bound failed")
	}
	if err := b.Release(); err == nil || !strings.Contains(err.Error(), "past its bound") {
		t.Errorf("Release past the bound: got %v", err)
	}
	if _, err := mp.NewSemaphore(-1); err == nil {
		t.Error("a semaphore of -1 permits was made")
	}
}

var lockPanicUpdate = mp.Register("test.lock.panic-update", func(ctx context.Context, j lockJob) (int, error) {
	j.V.Update(ctx, func(v *int64) { panic("in Update") })
	return 0, nil
})

func TestUpdatePanicUnlocks(t *testing.T) {
	// A panic in Update's function left the Value's lock held by a live
	// process, for good.
	t.Parallel()
	v, err := mp.NewValue[int64](0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 10*time.Second)
	if _, err := mp.Apply(ctx, p, lockPanicUpdate, lockJob{V: v}); !errors.As(err, new(*mp.PanicError)) {
		t.Fatalf("got %v, want the panic", err)
	}
	if err := v.Lock(ctx); err != nil { // the worker lives: no ErrOwnerDied to save us
		t.Fatalf("the lock is still held: %v", err)
	}
	v.Unlock()
}

func TestCloseTwice(t *testing.T) {
	// A second Close dropped a reference that a pool's Init held.
	t.Parallel()
	l, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, mp.PoolOptions{Workers: 1, MaxTasksPerWorker: 1, Init: mp.Bind(lockHoldInit, lockJob{L: l})})
	l.Close()
	l.Close()
	if err := l.Unlock(); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Unlock after Close: got %v", err)
	}
	ctx := bounded(t, 20*time.Second)
	for i := range 3 { // each on a new worker, whose Init gets the lock
		if _, err := mp.Apply(ctx, p, poolSquare, i); err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
	}
}

var lockHoldInit = mp.Register("test.lock.init", func(ctx context.Context, j lockJob) (int, error) {
	ok, err := j.L.TryLock()
	if err == nil && ok {
		err = j.L.Unlock()
	}
	return 0, err
})

func TestValueManyWorkers(t *testing.T) {
	// The same Value to 16 workers at once, in many small tasks: each
	// worker gets its descriptor once, and no update is lost.
	t.Parallel()
	v, err := mp.NewValue[int64](0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p := newPool(t, mp.PoolOptions{Workers: 16})
	jobs := make([]lockJob, 800)
	for i := range jobs {
		jobs[i] = lockJob{V: v, N: 10}
	}
	if _, err := mp.Map(bounded(t, 120*time.Second), p, lockCount, jobs, mp.ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	if got := v.Load(); got != 8000 {
		t.Errorf("got %d, want 8000", got)
	}
}
