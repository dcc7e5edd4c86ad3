package mp_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
