package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// limitGrower squares its item, but item 10, which grows until its worker
// is killed (or gives up at 2 GiB, an error the test reports).
var limitGrower = mp.Register("test.limits.grower", func(ctx context.Context, x int) (int, error) {
	if x != 10 {
		return x * x, nil
	}
	var held [][]byte
	for len(held) < 256 {
		b := make([]byte, 8<<20)
		for i := range b {
			b[i] = 1
		}
		held = append(held, b)
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("item %d reached %d MiB and was not killed", x, 8*len(held))
})

func TestMemoryLimitFailsOnlyItsItem(t *testing.T) {
	// A chunk whose worker passed WorkerMemoryLimit failed whole: the
	// items beside the growing one failed with ErrMemoryLimit too.
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("memory is read on Linux only")
	}
	ctx := bounded(t, 90*time.Second)
	probe := newPool(t, mp.PoolOptions{Workers: 1})
	base, err := mp.Apply(ctx, probe, poolRSS, 0)
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	for _, retries := range []int{0, 1} {
		t.Run(fmt.Sprintf("retries=%d", retries), func(t *testing.T) {
			p := newPool(t, mp.PoolOptions{Workers: 2, Retries: retries, WorkerMemoryLimit: base + 128<<20})
			out, errs, err := mp.MapAll(ctx, p, limitGrower, seq(20), mp.ChunkSize(3))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				e := errAt(errs, i)
				switch {
				case i == 10 && !errors.Is(e, mp.ErrMemoryLimit):
					t.Errorf("item 10: got %v, want ErrMemoryLimit", e)
				case i != 10 && (e != nil || out[i] != i*i):
					t.Errorf("item %d: got %d, %v; want %d, nil", i, out[i], e, i*i)
				}
			}
			if st := p.Stats(); st.RestartCauses["memory"] < 2 {
				t.Errorf("restarts for memory: got %d, want at least 2 (the chunk, then item 10 alone)", st.RestartCauses["memory"])
			}
		})
	}
}

// limitBig returns 100 bytes for item i, and appends i to the file named
// by $MP_TEST_RUNS, a line for each run.
var limitBig = mp.Register("test.limits.big", func(ctx context.Context, i int) (string, error) {
	f, err := os.OpenFile(os.Getenv("MP_TEST_RUNS"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%d\n", i); err != nil {
		return "", err
	}
	return strings.Repeat("x", 100), nil
})

func TestOversizedChunkResult(t *testing.T) {
	// The results of a chunk over MaxMessageSize were reported as a
	// failure per item, each with the whole error: that report was over
	// the limit too, the worker exited, and the chunk ran again in parts.
	t.Parallel()
	const n = 2000
	log := filepath.Join(t.TempDir(), "runs")
	p := newPool(t, mp.PoolOptions{Workers: 1, Worker: mp.WorkerOptions{
		MaxMessageSize: 64 << 10,
		Env:            append(os.Environ(), "MP_TEST_RUNS="+log),
	}})
	ctx := bounded(t, 60*time.Second)
	_, errs, err := mp.MapAll(ctx, p, limitBig, seq(n), mp.ChunkSize(n))
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != n {
		t.Fatalf("got %d errors, want %d", len(errs), n)
	}
	for i, e := range errs {
		if !errors.Is(e, mp.ErrMessageTooLarge) {
			t.Fatalf("item %d: got %v, want ErrMessageTooLarge", i, e)
		}
	}
	if st := p.Stats(); st.Restarts != 0 {
		t.Errorf("restarts: got %d (%v), want 0: the worker lives", st.Restarts, st.RestartCauses)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	runs := make([]int, n)
	for _, line := range strings.Fields(string(b)) {
		i, err := strconv.Atoi(line)
		if err != nil || i < 0 || i >= n {
			t.Fatalf("run log: bad line %q", line)
		}
		runs[i]++
	}
	for i, r := range runs {
		if r != 1 {
			t.Errorf("item %d ran %d times, want once", i, r)
		}
	}
}
