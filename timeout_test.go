package mp_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

func TestCancelKillsPromptly(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx, cancel := context.WithTimeout(bounded(t, 30*time.Second), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := mp.Map(ctx, p, poolStubborn, []time.Duration{time.Hour, time.Hour, time.Hour}, mp.ChunkSize(1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Map returned after %v, want soon after its 300ms deadline", d)
	}
	got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, []int{3})
	if err != nil || got[0] != 9 {
		t.Errorf("after the cancel: got %v, %v", got, err)
	}
}

func TestTaskTimeoutCooperative(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: 200 * time.Millisecond})
	ctx := bounded(t, 30*time.Second)
	pid, err := mp.Apply(ctx, p, poolSlow, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mp.Apply(ctx, p, poolSlow, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	// The function heeded its context, so its worker lives on.
	if again, err := mp.Apply(ctx, p, poolSlow, 0); err != nil || again != pid {
		t.Errorf("got pid %d, %v; want the same worker %d", again, err, pid)
	}
	_, err = mp.Apply(ctx, p, poolStubborn, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stubborn: got %v, want context.DeadlineExceeded", err)
	}
	if st := p.Stats(); st.RestartCauses["timeout"] != 1 {
		t.Errorf("restart causes: got %v, want one timeout", st.RestartCauses)
	}
}

// TestTaskTimeoutResultInGrace runs tasks that overrun their timeout by
// less than the grace, and return a value: the value is kept. A task may
// fail by its timeout only if its worker was killed for it (the test holds
// on a busy machine, where the kill may come first).
func TestTaskTimeoutResultInGrace(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: 200 * time.Millisecond})
	ctx := bounded(t, 30*time.Second)
	const n = 5
	ok := 0
	for range n {
		_, err := mp.Apply(ctx, p, poolStubborn, 230*time.Millisecond)
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, mp.ErrTaskTimeout):
			t.Fatalf("got %v, want a value or mp.ErrTaskTimeout", err)
		}
	}
	st := p.Stats()
	if failed := n - ok; st.RestartCauses["timeout"] != failed {
		t.Errorf("%d tasks failed by their timeout, and %v workers were killed for one (stats %+v): a task failed whose value came within the grace", failed, st.RestartCauses["timeout"], st)
	}
}

func TestTaskTimeoutInChunk(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: 300 * time.Millisecond})
	ctx := bounded(t, 60*time.Second)
	// Five items of 100ms in one chunk: 500ms in all, more than the
	// timeout, but each item is within it.
	d := 100 * time.Millisecond
	if _, err := mp.Map(ctx, p, poolStubborn, []time.Duration{d, d, d, d, d}, mp.ChunkSize(5)); err != nil {
		t.Fatalf("a chunk of items each within its timeout: %v", err)
	}
	// One item that ignores its context, in the middle of a chunk.
	in := []time.Duration{0, 0, time.Hour, 0, 0}
	out, errs, err := mp.MapAll(ctx, p, poolStubborn, in, mp.ChunkSize(5))
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		e := errAt(errs, i)
		switch {
		case i == 2 && !errors.Is(e, context.DeadlineExceeded):
			t.Errorf("item 2: got %v, want context.DeadlineExceeded", e)
		case i != 2 && (e != nil || out[i] == 0):
			t.Errorf("item %d: got %d, %v; want a pid", i, out[i], e)
		}
	}
	if st := p.Stats(); st.Restarts != 1 || st.RestartCauses["timeout"] != 1 {
		t.Errorf("restarts: got %d %v, want one, for the timeout", st.Restarts, st.RestartCauses)
	}
}

func TestTaskTimeoutHuge(t *testing.T) {
	t.Parallel()
	// A timeout as good as none must not overflow into an immediate one.
	p := newPool(t, mp.PoolOptions{Workers: 1, TaskTimeout: math.MaxInt64})
	got, err := mp.Map(bounded(t, 30*time.Second), p, poolSquare, seq(9), mp.ChunkSize(3))
	if err != nil || got[8] != 64 {
		t.Fatalf("got %v, %v", got, err)
	}
	if st := p.Stats(); st.Restarts != 0 {
		t.Errorf("restarts: got %d %v, want none", st.Restarts, st.RestartCauses)
	}
}
