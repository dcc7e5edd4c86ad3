package mp_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// condJob is what the Condition tests pass to their workers.
type condJob struct {
	C    *mp.Condition
	Turn *mp.Value[int64] // whose turn it is, by parity; or waiters counted
	N    int
}

var (
	// condTurns takes the odd turns of N: under the Condition, it waits
	// until Turn is odd, adds 1 and notifies.
	condTurns = mp.Register("test.cond.turns", func(ctx context.Context, j condJob) (int, error) {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return takeTurns(ctx, j, 1)
	})
	// condWaitOnce counts itself in Turn, under the lock, and waits once.
	condWaitOnce = mp.Register("test.cond.wait.once", func(ctx context.Context, j condJob) (int, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := j.C.Lock(ctx); err != nil {
			return 0, err
		}
		defer j.C.Unlock()
		j.Turn.Add(1)
		return 0, j.C.Wait(ctx)
	})
)

// takeTurns takes the turns of parity mine, of j.N in all.
func takeTurns(ctx context.Context, j condJob, mine int64) (int, error) {
	taken := 0
	for i := mine; i < int64(j.N); i += 2 {
		if err := j.C.Lock(ctx); err != nil {
			return taken, err
		}
		err := j.C.WaitFor(ctx, func() bool { return j.Turn.Load()%2 == mine })
		if err == nil {
			j.Turn.Add(1)
			err = j.C.NotifyAll()
			taken++
		}
		j.C.Unlock()
		if err != nil {
			return taken, fmt.Errorf("turn %d: %w", i, err)
		}
	}
	return taken, nil
}

// Two processes take 10,000 turns: each waits for its turn, takes it and
// notifies the other. A notification lost to the notifier's own next
// Wait leaves both waiting.
func TestConditionTurns(t *testing.T) {
	t.Parallel()
	const turns = 10000
	ctx := bounded(t, 60*time.Second)
	c, err := mp.NewCondition()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	turn, _ := mp.NewValue[int64](0)
	defer turn.Close()
	j := condJob{C: c, Turn: turn, N: turns}
	proc, err := mp.Spawn(ctx, condTurns, j, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := takeTurns(ctx, j, 0)
	if err != nil {
		t.Errorf("the parent, after %d turns (turn %d): %v", mine, turn.Load(), err)
	}
	theirs, err := proc.Wait(ctx)
	if err != nil {
		t.Errorf("the worker, after %d turns (turn %d): %v", theirs, turn.Load(), err)
	}
	if got := turn.Load(); got != turns || mine+theirs != turns {
		t.Errorf("turn %d, %d + %d turns taken, want %d", got, mine, theirs, turns)
	}
}

// spawnWaiters starts n workers that each wait once on j.C, and returns
// once all of them wait.
func spawnWaiters(t *testing.T, ctx context.Context, j condJob, n int) []*mp.Process[int] {
	t.Helper()
	want := j.Turn.Load() + int64(n)
	var procs []*mp.Process[int]
	for range n {
		p, err := mp.Spawn(ctx, condWaitOnce, j, mp.WorkerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	// Each counts itself under the lock and waits, which releases it:
	// seen under the lock, the count is of processes in Wait.
	for {
		if err := j.C.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		got := j.Turn.Load()
		j.C.Unlock()
		if got >= want {
			return procs
		}
		if ctx.Err() != nil {
			for i, p := range procs {
				select {
				case <-p.Done():
					_, err := p.Wait(ctx)
					t.Errorf("waiter %d ended: %v", i, err)
				default:
				}
			}
			t.Fatalf("%d of %d waiters came", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// One NotifyAll wakes every process waiting when it is called; a Wait
// that begins after a Notify is not woken by it, and does not take it
// from the waiter it was meant for.
func TestConditionNotifyAll(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 60*time.Second)
	c, err := mp.NewCondition()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	count, _ := mp.NewValue[int64](0)
	defer count.Close()
	j := condJob{C: c, Turn: count}

	procs := spawnWaiters(t, ctx, j, 3)
	c.Lock(ctx)
	if err := c.NotifyAll(); err != nil {
		t.Fatal(err)
	}
	c.Unlock()
	for i, p := range procs {
		if _, err := p.Wait(ctx); err != nil {
			t.Errorf("waiter %d: %v", i, err)
		}
	}

	// Notify(1) for one waiter, then this process waits at once, the
	// lock held throughout: the notification is the worker's.
	procs = spawnWaiters(t, ctx, j, 1)
	c.Lock(ctx)
	if err := c.Notify(1); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a Wait after Notify(1): got %v, want it to time out", err)
	}
	c.Unlock()
	if _, err := procs[0].Wait(ctx); err != nil {
		t.Errorf("the waiter notified: %v", err)
	}
}

// Notify(1) passes over a waiter killed while it waited.
func TestConditionWaiterKilled(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 60*time.Second)
	c, err := mp.NewCondition()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	count, _ := mp.NewValue[int64](0)
	defer count.Close()
	j := condJob{C: c, Turn: count}

	dead := spawnWaiters(t, ctx, j, 1)[0]
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Wait(ctx); err == nil {
		t.Fatal("the killed waiter returned no error")
	}
	live := spawnWaiters(t, ctx, j, 1)[0]
	c.Lock(ctx)
	if err := c.Notify(1); err != nil {
		t.Fatal(err)
	}
	c.Unlock()
	if _, err := live.Wait(ctx); err != nil {
		t.Errorf("the live waiter, after Notify(1): %v", err)
	}
}

// Waits that time out, with no Notify, do not fill the Condition's queue
// of waiters (it holds 1008).
func TestConditionTimeouts(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 60*time.Second)
	c, err := mp.NewCondition()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ended, cancel := context.WithCancel(ctx)
	cancel()
	c.Lock(ctx)
	defer c.Unlock()
	for i := range 3000 {
		if err := c.Wait(ended); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait %d with an ended ctx: %v", i, err)
		}
	}
	if err := c.Notify(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ended); !errors.Is(err, context.Canceled) {
		t.Errorf("a Wait after a Notify with no waiter: %v", err)
	}
}
