// Package bench_test measures mp against Python's multiprocessing. Each
// benchmark here has a twin in py/bench.py doing the same work; run.sh runs
// the two in turn and prints the ratio of their medians (see README.md).
package bench_test

import (
	"context"
	"fmt"
	"iter"
	"os"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// The sizes of the benchmarks, the same as in py/bench.py.
const (
	workers         = 2
	mapItems        = 1_000_000
	mapChunk1Items  = 20_000
	applyAsyncCalls = 50_000
	imapItems       = 200_000
	imapChunk       = 1000
)

var (
	square = mp.Register("bench.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	incr   = mp.Register("bench.incr", func(ctx context.Context, x int) (int, error) { return x + 1, nil })
)

func TestMain(m *testing.M) {
	maybeEcho()
	mp.Main()
	os.Exit(m.Run())
}

// The paths the benchmarks time, shared with TestBenchFunctionsWork so that
// what is measured is also checked.

// spawnIncr starts a process that returns x+1 and waits for it to exit.
func spawnIncr(ctx context.Context, x int) (int, error) {
	return spawnIncrOpts(ctx, x, mp.WorkerOptions{})
}

func spawnIncrOpts(ctx context.Context, x int, o mp.WorkerOptions) (int, error) {
	pr, err := mp.Spawn(ctx, incr, x, o)
	if err != nil {
		return 0, err
	}
	return pr.Wait(ctx)
}

// poolStart starts a pool, runs one task on it and closes it.
func poolStart(ctx context.Context, x int) (int, error) {
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: workers})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	return mp.Apply(ctx, p, incr, x)
}

// applyAsyncSum starts square(i) for i in [0, n) at once, then waits for
// every result and returns their sum.
func applyAsyncSum(ctx context.Context, p *mp.Pool, n int) (int, error) {
	futures := make([]*mp.Future[int], n)
	for i := range futures {
		futures[i] = mp.ApplyAsync(ctx, p, square, i)
	}
	sum := 0
	for _, fu := range futures {
		v, err := fu.Wait(ctx)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// imapUnorderedSum squares [0, n) with ImapUnordered in chunks of chunk
// items and returns how many results came back and their sum.
func imapUnorderedSum(ctx context.Context, p *mp.Pool, n, chunk int) (count, sum int, err error) {
	for v, err := range mp.ImapUnordered(ctx, p, square, ints(n), mp.ChunkSize(chunk)) {
		if err != nil {
			return count, sum, err
		}
		count++
		sum += v
	}
	return count, sum, nil
}

func ints(n int) iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
}

func intSlice(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// sumSquares returns the sum of i*i for i in [0, n).
func sumSquares(n int) int { return (n - 1) * n * (2*n - 1) / 6 }

// newWarmPool starts a pool of two workers and runs a little work on it, so
// that the first timed iteration does not pay for anything left to warm up.
func newWarmPool(tb testing.TB) *mp.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: workers})
	if err != nil {
		tb.Fatalf("NewPool: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	if _, err := mp.Apply(ctx, p, square, 3); err != nil {
		tb.Fatalf("warm-up Apply: %v", err)
	}
	if _, err := mp.Map(ctx, p, square, intSlice(1000)); err != nil {
		tb.Fatalf("warm-up Map: %v", err)
	}
	return p
}

// reportItems reports the throughput of a benchmark that handles items
// items per iteration.
func reportItems(b *testing.B, items int) {
	elapsed := b.Elapsed()
	b.ReportMetric(float64(items*b.N)/elapsed.Seconds(), "items/s")
}

func checkMap(out []int, n int) error {
	if len(out) != n {
		return fmt.Errorf("got %d results, want %d", len(out), n)
	}
	for i, v := range out {
		if v != i*i {
			return fmt.Errorf("result %d: got %d, want %d", i, v, i*i)
		}
	}
	return nil
}

// TestBenchFunctionsWork runs every benchmarked path once, small, and checks
// its results, so that go test ./... keeps the benchmarks honest.
func TestBenchFunctionsWork(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	t.Run("Spawn", func(t *testing.T) {
		if got, err := spawnIncr(ctx, 41); err != nil || got != 42 {
			t.Errorf("spawnIncr(41): got %d, %v, want 42, nil", got, err)
		}
	})
	t.Run("PoolStart", func(t *testing.T) {
		if got, err := poolStart(ctx, 41); err != nil || got != 42 {
			t.Errorf("poolStart(41): got %d, %v, want 42, nil", got, err)
		}
	})

	p := newWarmPool(t)
	tests := []struct {
		name string
		n    int
		opts []mp.CallOption
	}{
		{name: "Map", n: 10_000},
		{name: "MapChunk1", n: 200, opts: []mp.CallOption{mp.ChunkSize(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := mp.Map(ctx, p, square, intSlice(tt.n), tt.opts...)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if err := checkMap(out, tt.n); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("Apply", func(t *testing.T) {
		if got, err := mp.Apply(ctx, p, square, 7); err != nil || got != 49 {
			t.Errorf("Apply(square, 7): got %d, %v, want 49, nil", got, err)
		}
	})
	t.Run("ApplyAsync", func(t *testing.T) {
		const n = 500
		if got, err := applyAsyncSum(ctx, p, n); err != nil || got != sumSquares(n) {
			t.Errorf("applyAsyncSum(%d): got %d, %v, want %d, nil", n, got, err, sumSquares(n))
		}
	})
	t.Run("ImapUnordered", func(t *testing.T) {
		const n, chunk = 5000, 100
		count, sum, err := imapUnorderedSum(ctx, p, n, chunk)
		if err != nil || count != n || sum != sumSquares(n) {
			t.Errorf("imapUnorderedSum(%d, %d): got %d items summing to %d, %v; want %d summing to %d, nil",
				n, chunk, count, sum, err, n, sumSquares(n))
		}
	})
}

// BenchmarkSpawn times starting a process that runs a trivial function,
// getting its result, and its exit. Twin: multiprocessing.Process with a
// Pipe, started by fork and by spawn.
func BenchmarkSpawn(b *testing.B) {
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		v, err := spawnIncr(ctx, 1)
		if err != nil || v != 2 {
			b.Fatalf("spawnIncr(1): got %d, %v, want 2, nil", v, err)
		}
	}
}

// BenchmarkPoolStart times a pool's whole life: NewPool with two workers,
// one Apply, Close. Twin: Pool(2), apply, terminate, join.
func BenchmarkPoolStart(b *testing.B) {
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		v, err := poolStart(ctx, 1)
		if err != nil || v != 2 {
			b.Fatalf("poolStart(1): got %d, %v, want 2, nil", v, err)
		}
	}
}

// BenchmarkMap times Map of a million ints with the default chunking, a
// chunk of 125,000 items per task. Twin: Pool.map(square, range(1_000_000)).
func BenchmarkMap(b *testing.B) {
	benchmarkMap(b, mapItems)
}

// BenchmarkMapChunk1 times Map with one item per task: a round trip per
// item, pipelined. Twin: Pool.map(square, range(20_000), chunksize=1).
func BenchmarkMapChunk1(b *testing.B) {
	benchmarkMap(b, mapChunk1Items, mp.ChunkSize(1))
}

func benchmarkMap(b *testing.B, n int, opts ...mp.CallOption) {
	ctx := b.Context()
	p := newWarmPool(b)
	in := intSlice(n)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mp.Map(ctx, p, square, in, opts...); err != nil {
			b.Fatalf("Map: %v", err)
		}
	}
	reportItems(b, n)
}

// BenchmarkApply times one Apply round trip at a time. Twin: Pool.apply.
func BenchmarkApply(b *testing.B) {
	ctx := b.Context()
	p := newWarmPool(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mp.Apply(ctx, p, square, 3); err != nil {
			b.Fatalf("Apply: %v", err)
		}
	}
	reportItems(b, 1)
}

// BenchmarkApplyAsync times 50,000 ApplyAsync calls made at once, then
// waited for. Twin: Pool.apply_async, then get on every result.
func BenchmarkApplyAsync(b *testing.B) {
	ctx := b.Context()
	p := newWarmPool(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := applyAsyncSum(ctx, p, applyAsyncCalls); err != nil {
			b.Fatalf("ApplyAsync: %v", err)
		}
	}
	reportItems(b, applyAsyncCalls)
}

// BenchmarkImapUnordered times ImapUnordered over 200,000 ints in chunks
// of 1000. Twin: Pool.imap_unordered(square, range(200_000), chunksize=1000).
func BenchmarkImapUnordered(b *testing.B) {
	ctx := b.Context()
	p := newWarmPool(b)
	b.ReportAllocs()
	for b.Loop() {
		if count, _, err := imapUnorderedSum(ctx, p, imapItems, imapChunk); err != nil || count != imapItems {
			b.Fatalf("ImapUnordered: got %d items, %v; want %d, nil", count, err, imapItems)
		}
	}
	reportItems(b, imapItems)
}

// BenchmarkSpawnWarm is BenchmarkSpawn with WorkerOptions.KeepSpare: the
// latency of a Spawn that finds a spare ready, to its result and exit. The
// spare taken is replaced in the background, between timed Spawns.
func BenchmarkSpawnWarm(b *testing.B) {
	ctx := b.Context()
	o := mp.WorkerOptions{KeepSpare: true}
	start := time.Now()
	if _, err := spawnIncrOpts(ctx, 0, o); err != nil { // leaves a spare starting
		b.Fatal(err)
	}
	// A spare takes about as long to start as that cold Spawn did, which
	// on a loaded machine is more than 20ms: give each twice as long, so
	// that what is timed is Spawn with a spare ready.
	settle := max(20*time.Millisecond, 2*time.Since(start))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		time.Sleep(settle) // the next spare is ready
		b.StartTimer()
		pr, err := mp.Spawn(ctx, incr, 1, o)
		if err != nil {
			b.Fatal(err)
		}
		if v, err := pr.Result(ctx); v != 2 || err != nil {
			b.Fatalf("got %d, %v", v, err)
		}
		b.StopTimer()
		pr.Wait(ctx) // the exit, which takes the kernel a few ms more, is not Spawn's to result
		b.StartTimer()
	}
}

// Shared state: the sizes, as in py/bench.py.
const (
	big     = 256 << 20
	lockOps = 20_000
)

type sharedArgs struct {
	Mem   *mp.SharedMemory
	Lock  *mp.Lock
	Value *mp.Value[int64]
	Sem   *mp.Semaphore
	RLock *mp.RLock
	N     int
}

var (
	sumFewShared = mp.Register("bench.sum-few-shared", func(ctx context.Context, a sharedArgs) (int, error) {
		s := 0
		for _, b := range a.Mem.Bytes()[:8] {
			s += int(b)
		}
		return s, nil
	})
	sumFew = mp.Register("bench.sum-few", func(ctx context.Context, b []byte) (int, error) {
		s := 0
		for _, c := range b[:8] {
			s += int(c)
		}
		return s, nil
	})
	lockLoop = mp.Register("bench.lock-loop", func(ctx context.Context, a sharedArgs) (int, error) {
		for range a.N {
			if err := a.Lock.Lock(ctx); err != nil {
				return 0, err
			}
			if err := a.Lock.Unlock(); err != nil {
				return 0, err
			}
		}
		return a.N, nil
	})
	semLoop = mp.Register("bench.sem-loop", func(ctx context.Context, a sharedArgs) (int, error) {
		for range a.N {
			if err := a.Sem.Acquire(ctx); err != nil {
				return 0, err
			}
			if err := a.Sem.Release(); err != nil {
				return 0, err
			}
		}
		return a.N, nil
	})
	rlockLoop = mp.Register("bench.rlock-loop", func(ctx context.Context, a sharedArgs) (int, error) {
		for range a.N {
			for range 2 {
				if err := a.RLock.Lock(ctx); err != nil {
					return 0, err
				}
			}
			for range 2 {
				if err := a.RLock.Unlock(); err != nil {
					return 0, err
				}
			}
		}
		return a.N, nil
	})
	valueLoop = mp.Register("bench.value-loop", func(ctx context.Context, a sharedArgs) (int, error) {
		for range a.N {
			if err := a.Value.Update(ctx, func(v *int64) { *v++ }); err != nil {
				return 0, err
			}
		}
		return a.N, nil
	})
)

// BenchmarkSharedMemory passes a 256 MiB block to a worker, which sums a
// few bytes of it: the block is not copied, and each worker maps it once.
func BenchmarkSharedMemory(b *testing.B) {
	p := newWarmPool(b)
	m, err := mp.CreateSharedMemory("", big)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mp.Apply(b.Context(), p, sumFewShared, sharedArgs{Mem: m}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBigArg passes the same 256 MiB by value.
func BenchmarkBigArg(b *testing.B) {
	ctx := b.Context()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: workers, Worker: mp.WorkerOptions{MaxMessageSize: 2 * big}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	data := make([]byte, big)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mp.Apply(ctx, p, sumFew, data); err != nil {
			b.Fatal(err)
		}
	}
}

// sharedLoops runs f in both workers at once, each lockOps times.
func sharedLoops(b *testing.B, f mp.Func[sharedArgs, int]) {
	p := newWarmPool(b)
	l, err := mp.NewLock()
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	v, err := mp.NewValue[int64](0)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	sem, err := mp.NewSemaphore(1)
	if err != nil {
		b.Fatal(err)
	}
	defer sem.Close()
	r, err := mp.NewRLock()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	arg := sharedArgs{Lock: l, Value: v, Sem: sem, RLock: r, N: lockOps}
	args := []sharedArgs{arg, arg}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mp.Map(b.Context(), p, f, args, mp.ChunkSize(1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2*lockOps*b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkLock has two workers take and release one Lock, lockOps times each.
func BenchmarkLock(b *testing.B) { sharedLoops(b, lockLoop) }

// BenchmarkValue has two workers add 1 to one Value under its lock,
// lockOps times each.
func BenchmarkValue(b *testing.B) { sharedLoops(b, valueLoop) }

// BenchmarkSemaphore has two workers acquire and release one permit of a
// Semaphore of 1, lockOps times each.
func BenchmarkSemaphore(b *testing.B) { sharedLoops(b, semLoop) }

// BenchmarkRLock has two workers lock one RLock twice and unlock it twice,
// lockOps times each.
func BenchmarkRLock(b *testing.B) { sharedLoops(b, rlockLoop) }
