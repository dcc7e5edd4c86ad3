package mp_test

import (
	"errors"
	"io"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

func TestImapOrder(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	squares := make([]int, 500)
	for i := range squares {
		squares[i] = i * i
	}
	t.Run("Imap", func(t *testing.T) {
		t.Parallel()
		var got []int
		for v, err := range mp.Imap(bounded(t, 30*time.Second), p, poolSquare, slices.Values(seq(500)), mp.ChunkSize(3)) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		for i, v := range got {
			if v != i*i {
				t.Fatalf("got[%d] = %d, want %d", i, v, i*i)
			}
		}
		if len(got) != 500 {
			t.Fatalf("got %d results, want 500", len(got))
		}
	})
	t.Run("ImapUnordered", func(t *testing.T) {
		t.Parallel()
		var un []int
		for v, err := range mp.ImapUnordered(bounded(t, 30*time.Second), p, poolSquare, slices.Values(seq(500))) {
			if err != nil {
				t.Fatal(err)
			}
			un = append(un, v)
		}
		slices.Sort(un)
		if !slices.Equal(un, squares) {
			t.Errorf("got %v, want the squares of 0..499", un)
		}
	})
}

func TestImapLazyEndless(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 30*time.Second)
	read := 0
	endless := func(yield func(int) bool) {
		for i := 0; ; i++ {
			read++
			if !yield(i) {
				return
			}
		}
	}
	n := 0
	for v, err := range mp.Imap(ctx, p, poolSquare, endless) {
		if err != nil || v != n*n {
			t.Fatalf("item %d: got %d, %v", n, v, err)
		}
		if n++; n == 100 {
			break
		}
	}
	// At most a window of 8 tasks per worker (4 times the pool's depth of
	// 2) is in flight or parked until the results before them are yielded;
	// as many more may be done but not yet taken.
	if window := 4 * 2 * 2; read > 100+2*window+1 {
		t.Errorf("read %d items of the input for 100 results, want a bounded read-ahead", read)
	}
}

// TestImapBoundedBehindSlowItem checks that results parked behind a slow
// item count in Imap's window: while the first item runs, the other
// worker must not go on through the input without bound.
func TestImapBoundedBehindSlowItem(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 30*time.Second)
	read := 0
	endless := func(yield func(time.Duration) bool) {
		for i := 0; ; i++ {
			read++
			d := time.Duration(0)
			if i == 0 {
				d = 300 * time.Millisecond
			}
			if !yield(d) {
				return
			}
		}
	}
	n := 0
	for _, err := range mp.Imap(ctx, p, poolSlow, endless) {
		if err != nil {
			t.Fatalf("item %d: %v", n, err)
		}
		if n++; n == 1 {
			break
		}
	}
	if window := 4 * 2 * 2; read > 1+2*window+1 {
		t.Errorf("read %d items of the input while its first item ran, want at most %d", read, 2+2*window)
	}
}

// TestImapBreakFreesWorkers runs alone: it counts goroutines and children.
func TestImapBreakFreesWorkers(t *testing.T) {
	p := newPool(t, mp.PoolOptions{Workers: 2})
	ctx := bounded(t, 60*time.Second)
	waitWorkers(t, p, 2)
	baseGoroutines := mpGoroutines()
	basePIDs, _ := children(t)
	// The tasks after the first run for an hour: a break must stop them,
	// by their context or by killing their workers.
	tests := []struct {
		name string
		f    mp.Func[time.Duration, int]
	}{
		{name: "cooperative", f: poolSlow},
		{name: "stubborn", f: poolStubborn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := func(yield func(time.Duration) bool) {
				if !yield(0) {
					return
				}
				for yield(time.Hour) {
				}
			}
			start := time.Now()
			for _, err := range mp.Imap(ctx, p, tt.f, in) {
				if err != nil {
					t.Fatal(err)
				}
				break
			}
			st := p.Stats()
			if st.TasksRunning != 0 || st.TasksQueued != 0 {
				t.Errorf("%s: after break: %d tasks running, %d queued; want none", tt.f, st.TasksRunning, st.TasksQueued)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%s: break took %v", tt.f, d)
			}
		})
	}
	// The stubborn tasks' workers were killed; wait for their replacements,
	// then for the goroutines of the dead ones to end.
	waitWorkers(t, p, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, zombies := children(t)
		g := mpGoroutines()
		if g <= baseGoroutines && len(pids) == len(basePIDs) && len(zombies) == 0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("got %d goroutines and children %v (zombies %v), want %d goroutines and %d children; goroutines:\n%s",
				g, pids, zombies, baseGoroutines, len(basePIDs), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestImapChunksWorkersDie(t *testing.T) {
	// Workers die under chunks of an Imap: each chunk is split and run
	// again from the items kept for it (whose memory the iteration uses
	// again once all of their outcomes are in), so every other item's
	// result is right, and each crashing item fails alone. Chunks of 300
	// are split in parts of 19, whose crashing ones are split again while
	// the others' outcomes come in.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 3, TaskTimeout: 500 * time.Millisecond, Worker: mp.WorkerOptions{Stderr: io.Discard}})
	ctx := bounded(t, 120*time.Second)
	for _, c := range []struct {
		ordered  bool
		n, chunk int
	}{{true, 600, 7}, {false, 600, 7}, {true, 1200, 300}, {false, 1200, 300}} {
		calls := mp.Imap[int, int]
		if !c.ordered {
			calls = mp.ImapUnordered[int, int]
		}
		seen := make(map[int]bool)
		i := 0
		for v, err := range calls(ctx, p, poolCrash, slices.Values(seq(c.n)), mp.ChunkSize(c.chunk)) {
			if err != nil {
				var te *mp.TaskError
				if !errors.As(err, &te) {
					t.Fatalf("%+v: %v", c, err)
				}
				if _, ok := crashKindOf(te.Index); !ok {
					t.Errorf("%+v: item %d failed: %v", c, te.Index, err)
				}
				seen[-1-te.Index] = true
			} else {
				r := int(math.Sqrt(float64(v)))
				if r*r != v {
					t.Fatalf("%+v: %d is no square", c, v)
				}
				if c.ordered && r != i {
					t.Errorf("%+v: result %d is %d's, want %d's", c, i, r, i)
				}
				seen[r] = true
			}
			i++
		}
		for x := range c.n {
			if _, bad := crashKindOf(x); bad != seen[-1-x] || !bad && !seen[x] {
				t.Errorf("%+v: item %d: result %v, failure %v", c, x, seen[x], seen[-1-x])
			}
		}
	}
}
