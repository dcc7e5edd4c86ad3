package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// syncJob is what the tests of the other shared objects pass.
type syncJob struct {
	R *mp.RLock
	S *mp.Semaphore
	C *mp.Condition
	B *mp.Barrier
	A *mp.Array[int64]
	V *mp.Value[int64]
	N int
}

var (
	// rlockHold locks the RLock twice and keeps it until killed.
	rlockHold = mp.Register("test.rlock.hold", func(ctx context.Context, j syncJob) (int, error) {
		for range 2 {
			if err := j.R.Lock(ctx); err != nil {
				return 0, err
			}
		}
		time.Sleep(time.Hour)
		return 0, nil
	})
	// rlockTry reports whether the RLock could be taken here.
	rlockTry = mp.Register("test.rlock.try", func(ctx context.Context, j syncJob) (bool, error) {
		ok, err := j.R.TryLock()
		if ok {
			j.R.Unlock()
		}
		return ok, err
	})
	// semHold takes N permits and keeps them until killed.
	semHold = mp.Register("test.sem.hold", func(ctx context.Context, j syncJob) (int, error) {
		for range j.N {
			if err := j.S.Acquire(ctx); err != nil {
				return 0, err
			}
		}
		time.Sleep(time.Hour)
		return 0, nil
	})
	// condWait waits under the Condition until the Value reaches N, then
	// adds 1 to the Array's element 0.
	condWait = mp.Register("test.cond.wait", func(ctx context.Context, j syncJob) (int, error) {
		if err := j.C.Lock(ctx); err != nil {
			return 0, err
		}
		defer j.C.Unlock()
		if err := j.C.WaitFor(ctx, func() bool { return j.V.Load() >= int64(j.N) }); err != nil {
			return 0, err
		}
		j.A.Add(0, 1)
		return 0, nil
	})
	// barrierRounds waits at the Barrier N times, and returns its arrival
	// indexes, one digit each.
	barrierRounds = mp.Register("test.barrier.rounds", func(ctx context.Context, j syncJob) (string, error) {
		var b strings.Builder
		for range j.N {
			i, err := j.B.Wait(ctx)
			if err != nil {
				return b.String(), err
			}
			fmt.Fprint(&b, i)
		}
		return b.String(), nil
	})
	// arrayAdd adds 1 to every element N times with Add or, for a
	// negative N, -N times under the lock through Update. (The two do not
	// mix: Update's writes are plain, atomic only against other holders
	// of the lock.)
	arrayAdd = mp.Register("test.array.add", func(ctx context.Context, j syncJob) (int, error) {
		for range j.N {
			for i := range j.A.Len() {
				j.A.Add(i, 1)
			}
		}
		for range -j.N {
			if err := j.A.Update(ctx, func(s []int64) {
				for i := range s {
					s[i]++
				}
			}); err != nil {
				return 0, err
			}
		}
		return j.A.Len(), nil
	})
)

// waitHeld waits until another process holds what try takes.
func waitHeld(t *testing.T, ctx context.Context, try func() bool) {
	t.Helper()
	for try() {
		if ctx.Err() != nil {
			t.Fatal("the child never took it")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRLock(t *testing.T) {
	t.Parallel()
	r, err := mp.NewRLock()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := bounded(t, 30*time.Second)

	// Reentrant in the process that holds it, exclusive of others.
	for range 3 {
		if err := r.Lock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p := newPool(t, mp.PoolOptions{Workers: 1})
	for range 2 {
		if err := r.Unlock(); err != nil {
			t.Fatal(err)
		}
		if ok, err := mp.Apply(ctx, p, rlockTry, syncJob{R: r}); ok || err != nil {
			t.Fatalf("a worker took an RLock the parent holds: %v, %v", ok, err)
		}
	}
	if err := r.Unlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := mp.Apply(ctx, p, rlockTry, syncJob{R: r}); !ok || err != nil {
		t.Fatalf("a worker could not take a free RLock: %v, %v", ok, err)
	}
	if err := r.Unlock(); err == nil || !strings.Contains(err.Error(), "unlocked") {
		t.Errorf("Unlock of an unlocked RLock: got %v", err)
	}

	// Taken over, once, when its holder dies holding it twice.
	child := spawn(t, ctx, rlockHold, syncJob{R: r})
	waitHeld(t, ctx, func() bool {
		ok, err := r.TryLock()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			r.Unlock()
		}
		return ok
	})
	if err := r.Unlock(); err == nil || !strings.Contains(err.Error(), "held by process") {
		t.Errorf("Unlock of an RLock another process holds: got %v", err)
	}
	child.Kill()
	start := time.Now()
	err = r.Lock(ctx)
	if took := time.Since(start); took > time.Second {
		t.Errorf("the RLock of a dead holder was taken over after %v, want within 1s", took)
	}
	if !errors.Is(err, mp.ErrOwnerDied) {
		t.Fatalf("Lock after its holder died: got %v, want ErrOwnerDied", err)
	}
	if err := r.Lock(ctx); err != nil {
		t.Fatalf("Lock again: %v", err)
	}
	r.Unlock()
	if err := r.Unlock(); err != nil {
		t.Fatalf("the second Unlock after taking over: %v", err)
	}
	if ok, err := mp.Apply(ctx, p, rlockTry, syncJob{R: r}); !ok || err != nil {
		t.Errorf("the RLock was not free after as many Unlocks as Locks: %v, %v", ok, err)
	}
	child.Wait(ctx)
}

func TestSemaphoreOwnerDied(t *testing.T) {
	t.Parallel()
	for _, bounded_ := range []bool{false, true} {
		t.Run(fmt.Sprint("bounded=", bounded_), func(t *testing.T) {
			t.Parallel()
			newSem := mp.NewSemaphore
			if bounded_ {
				newSem = mp.NewBoundedSemaphore
			}
			s, err := newSem(2)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := bounded(t, 30*time.Second)
			child := spawn(t, ctx, semHold, syncJob{S: s, N: 2})
			for s.Value() > 0 {
				if ctx.Err() != nil {
					t.Fatal("the child never took its permits")
				}
				time.Sleep(time.Millisecond)
			}
			short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			if err := s.Acquire(short); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Acquire while a live child holds every permit: got %v", err)
			}
			child.Kill()
			start := time.Now()
			err = s.Acquire(ctx)
			if took := time.Since(start); took > time.Second {
				t.Errorf("the permits of a dead holder came back after %v, want within 1s", took)
			}
			if !errors.Is(err, mp.ErrOwnerDied) || !strings.Contains(err.Error(), "2 permits") {
				t.Fatalf("Acquire after the holder died: got %v, want ErrOwnerDied for 2 permits", err)
			}
			if ok, err := s.TryAcquire(); !ok || err != nil {
				t.Errorf("the second permit given back: %v, %v", ok, err)
			}
			if ok, err := s.TryAcquire(); ok || err != nil {
				t.Errorf("a third permit of 2: %v, %v", ok, err)
			}
			for range 2 {
				if err := s.Release(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Release(); bounded_ == (err == nil) {
				t.Errorf("Release past the bound: got %v", err)
			}
			child.Wait(ctx)
		})
	}
}

func TestCondition(t *testing.T) {
	t.Parallel()
	c, err := mp.NewCondition()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, _ := mp.NewValue[int64](0)
	defer v.Close()
	a, _ := mp.NewArray[int64](1)
	defer a.Close()
	ctx := bounded(t, 60*time.Second)

	if err := c.Notify(1); err == nil || !strings.Contains(err.Error(), "without holding") {
		t.Errorf("Notify without the lock: got %v", err)
	}
	if err := c.Wait(ctx); err == nil || !strings.Contains(err.Error(), "without holding") {
		t.Errorf("Wait without the lock: got %v", err)
	}

	// Three waiters in worker processes; Notify(1) wakes one of them once
	// the state it waits for is true, NotifyAll the others.
	const waiters = 3
	p := newPool(t, mp.PoolOptions{Workers: waiters})
	var futures []*mp.Future[int]
	for range waiters {
		futures = append(futures, mp.ApplyAsync(ctx, p, condWait, syncJob{C: c, V: v, A: a, N: 1}))
	}
	v.Store(1) // not yet notified: the waiters look only when woken
	c.Lock(ctx)
	if err := c.Notify(1); err != nil {
		t.Fatal(err)
	}
	c.Unlock()
	for a.Load(0) < 1 {
		if ctx.Err() != nil {
			t.Fatal("Notify(1) woke no waiter")
		}
		time.Sleep(time.Millisecond)
	}
	c.Lock(ctx)
	if err := c.NotifyAll(); err != nil {
		t.Fatal(err)
	}
	c.Unlock()
	for _, f := range futures {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Load(0); got != waiters {
		t.Errorf("%d waiters went on, want %d", got, waiters)
	}

	// A Wait that times out holds the lock again.
	c.Lock(ctx)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := c.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its deadline: got %v", err)
	}
	if err := c.Unlock(); err != nil {
		t.Errorf("the lock after a Wait that timed out: %v", err)
	}
}

func TestBarrier(t *testing.T) {
	t.Parallel()
	const parties, rounds = 4, 5
	b, err := mp.NewBarrier(parties)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := bounded(t, 60*time.Second)
	var procs []*mp.Process[string]
	for range parties - 1 {
		pr := spawn(t, ctx, barrierRounds, syncJob{B: b, N: rounds})
		procs = append(procs, pr)
	}
	var mine []int
	for range rounds {
		i, err := b.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, i)
	}
	indexes := make([][]int, rounds)
	for r, i := range mine {
		indexes[r] = append(indexes[r], i)
	}
	for _, pr := range procs {
		got, err := pr.Wait(ctx)
		if err != nil || len(got) != rounds {
			t.Fatalf("a party: %q, %v", got, err)
		}
		for r, c := range got {
			indexes[r] = append(indexes[r], int(c-'0'))
		}
	}
	for r, is := range indexes {
		slices.Sort(is)
		if !slices.Equal(is, []int{0, 1, 2, 3}) {
			t.Errorf("round %d: arrival indexes %v, want each of 0 to 3 once", r, is)
		}
	}

	// A party that gives up breaks the barrier for every party.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := b.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait alone past its deadline: got %v", err)
	}
	if !b.Broken() {
		t.Error("the barrier is not broken after a party gave up")
	}
	if _, err := b.Wait(ctx); !errors.Is(err, mp.ErrBrokenBarrier) {
		t.Errorf("Wait on a broken barrier: got %v", err)
	}
	b.Reset()
	if b.Broken() || b.Waiting() != 0 || b.Parties() != parties {
		t.Errorf("after Reset: broken %v, %d waiting, %d parties", b.Broken(), b.Waiting(), b.Parties())
	}

	// Abort wakes a waiting party with ErrBrokenBarrier.
	pr := spawn(t, ctx, barrierRounds, syncJob{B: b, N: 1})
	for b.Waiting() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the party never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	b.Abort()
	if _, err := pr.Wait(ctx); err == nil || !strings.Contains(err.Error(), "broken barrier") {
		t.Errorf("a waiting party after Abort: got %v", err)
	}
	if _, err := mp.NewBarrier(0); err == nil {
		t.Error("a barrier of 0 parties was made")
	}
}

func TestArray(t *testing.T) {
	t.Parallel()
	a, err := mp.NewArrayOf[int64](10, 20, 30)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := bounded(t, 60*time.Second)
	p := newPool(t, mp.PoolOptions{Workers: 4})
	jobs := make([]syncJob, 8)
	for _, n := range []int{100, -100} {
		for i := range jobs {
			jobs[i] = syncJob{A: a, N: n}
		}
		if _, err := mp.Map(ctx, p, arrayAdd, jobs, mp.ChunkSize(1)); err != nil {
			t.Fatal(err)
		}
	}
	lens, err := mp.Map(ctx, p, arrayAdd, jobs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if lens[0] != 3 {
		t.Errorf("a worker's Array has %d elements, want 3", lens[0])
	}
	got, err := a.Copy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{1710, 1720, 1730}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if !a.CompareAndSwap(1, 1720, 5) || a.Load(1) != 5 || a.Slice()[1] != 5 {
		t.Errorf("CompareAndSwap: element 1 is %d", a.Load(1))
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "out of range") {
				t.Errorf("Load past the end: recovered %v", r)
			}
		}()
		a.Load(3)
	}()
	f, _ := mp.NewArray[float64](2)
	defer f.Close()
	f.Store(1, 0.25)
	if f.Add(1, 0.5) != 0.75 || f.Len() != 2 {
		t.Errorf("float64 Array: %v", f.Slice())
	}
	for _, n := range []int{0, -1, 1 << 62} {
		if _, err := mp.NewArray[int32](n); err == nil || !strings.Contains(err.Error(), "elements") {
			t.Errorf("NewArray(%d): got %v", n, err)
		}
	}
}

func TestHandlesManyApply(t *testing.T) {
	// The same Lock, SharedMemory and Queue in 100,000 Apply calls: each
	// worker maps each once, and no descriptor or mapping accumulates in
	// the workers or in the parent.
	t.Parallel()
	m, err := mp.CreateSharedMemory("", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	q, err := mp.NewQueue[int](mp.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 300*time.Second)
	const calls, callers = 100_000, 8
	report := shmJob{Mem: m, L: l, Q: q, Hi: 1, ReportUsed: true}
	first := map[int]int{} // by worker pid: its count at the start
	check := func(i int) {
		for range 2 { // likely each worker once
			used, err := mp.Apply(ctx, p, shmPID, report)
			if err != nil {
				t.Fatal(err)
			}
			pid, n := used[0], used[1]
			if f, ok := first[pid]; !ok {
				first[pid] = n
			} else if n != f {
				t.Fatalf("after %d calls worker %d holds %d descriptors and %d mappings, from %d and %d", i, pid, n%1000, n/1000, f%1000, f/1000)
			}
		}
	}
	check(0)
	parentFDs := len(openFDs(t))
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := c; i < calls; i += callers {
				if _, err := mp.Apply(ctx, p, shmSum, shmJob{Mem: m, L: l, Q: q, Hi: 1}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	check(calls)
	for pid, n := range first {
		if n/1000 != 3 {
			t.Errorf("worker %d has %d mappings of shared memory, want 3 (the block, the lock and the queue)", pid, n/1000)
		}
	}
	// The parent is this test process, where other tests open and close
	// descriptors meanwhile (tens at a time): a leak of one per call would
	// be a hundred thousand.
	if n := len(openFDs(t)); n > parentFDs+1000 {
		t.Errorf("the parent has %d descriptors open, from %d", n, parentFDs)
	}
	if s := p.Stats(); s.Restarts != 0 {
		t.Errorf("%d workers restarted: the counts are not of the same workers", s.Restarts)
	}
}

// shmPID is shmSum's report, with the worker's pid.
var shmPID = mp.Register("test.shm.pid", func(ctx context.Context, j shmJob) ([2]int, error) {
	return [2]int{os.Getpid(), usedHere()}, nil
})

// semGuard holds one of the semaphore's N permits while it counts how many
// holders there are, and fails if they are more than N.
var semGuard = mp.Register("test.sem.guard", func(ctx context.Context, j syncJob) (int, error) {
	for range 20 {
		if err := j.S.Acquire(ctx); err != nil {
			return 0, err
		}
		in := j.V.Add(1)
		for range 100 {
			runtime.Gosched()
		}
		j.V.Add(-1)
		if err := j.S.Release(); err != nil {
			return 0, err
		}
		if in > int64(j.N) {
			return 0, fmt.Errorf("%d holders of a semaphore of %d", in, j.N)
		}
	}
	return 0, nil
})

func TestSemaphoreManyWorkers(t *testing.T) {
	t.Parallel()
	const permits = 3
	s, err := mp.NewBoundedSemaphore(permits)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, _ := mp.NewValue[int64](0)
	defer v.Close()
	p := newPool(t, mp.PoolOptions{Workers: 16})
	jobs := make([]syncJob, 200)
	for i := range jobs {
		jobs[i] = syncJob{S: s, V: v, N: permits}
	}
	if _, err := mp.Map(bounded(t, 120*time.Second), p, semGuard, jobs, mp.ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	if s.Value() != permits || v.Load() != 0 {
		t.Errorf("after every task: %d permits free, %d holders", s.Value(), v.Load())
	}
}

// rlockGuard adds 1 to the Value with a plain load and store, under the
// RLock taken twice, N times: exclusion between processes keeps every add.
var rlockGuard = mp.Register("test.rlock.guard", func(ctx context.Context, j syncJob) (int, error) {
	for range j.N {
		for range 2 {
			if err := j.R.Lock(ctx); err != nil {
				return 0, err
			}
		}
		j.V.Store(j.V.Load() + 1)
		for range 2 {
			if err := j.R.Unlock(); err != nil {
				return 0, err
			}
		}
	}
	return 0, nil
})

func TestRLockManyWorkers(t *testing.T) {
	t.Parallel()
	r, err := mp.NewRLock()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v, _ := mp.NewValue[int64](0)
	defer v.Close()
	p := newPool(t, mp.PoolOptions{Workers: 16})
	jobs := make([]syncJob, 160)
	for i := range jobs {
		jobs[i] = syncJob{R: r, V: v, N: 50}
	}
	if _, err := mp.Map(bounded(t, 120*time.Second), p, rlockGuard, jobs, mp.ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	if got := v.Load(); got != 8000 {
		t.Errorf("got %d, want 8000: an RLock let two processes in", got)
	}
}
