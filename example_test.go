package mp_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/go-mp/mp"
)

// The functions the examples run in worker processes. Like every
// registered function, they are package-level variables, so that the
// workers (this test binary, re-executed) register them too.
var (
	exampleSquare = mp.Register("example.square", func(ctx context.Context, x int) (int, error) {
		return x * x, nil
	})
	exampleSqrt = mp.Register("example.sqrt", func(ctx context.Context, x float64) (float64, error) {
		if x < 0 {
			return 0, fmt.Errorf("square root of negative number %g", x)
		}
		return math.Sqrt(x), nil
	})
	exampleUpper = mp.Register("example.upper", func(ctx context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	})
	exampleSleep = mp.Register("example.sleep", func(ctx context.Context, d time.Duration) (time.Duration, error) {
		select {
		case <-time.After(d):
			return d, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	exampleIsWorker = mp.Register("example.isworker", func(ctx context.Context, _ struct{}) (bool, error) {
		return mp.Current().Worker, nil
	})
)

func ExamplePool() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	squares, err := mp.Map(ctx, p, exampleSquare, []int{1, 2, 3, 4, 5})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(squares)
	// Output: [1 4 9 16 25]
}

func ExampleMap() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	nums := make([]int, 100)
	for i := range nums {
		nums[i] = i
	}
	// The results come in the order of the input, whichever worker ran
	// each chunk of 10 items.
	squares, err := mp.Map(ctx, p, exampleSquare, nums, mp.ChunkSize(10))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(squares[:5], squares[99])
	// Output: [0 1 4 9 16] 9801
}

func ExampleMapAll() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	in := []float64{1, 4, -9, 16}
	// Unlike Map, MapAll runs every item, and returns each one's error.
	out, errs, err := mp.MapAll(ctx, p, exampleSqrt, in)
	if err != nil {
		log.Fatal(err) // the call as a whole failed
	}
	for i, x := range in {
		if errs != nil && errs[i] != nil {
			fmt.Println(errs[i])
			continue
		}
		fmt.Printf("sqrt(%g) = %g\n", x, out[i])
	}
	// Output:
	// sqrt(1) = 1
	// sqrt(4) = 2
	// mp: example.sqrt[2]: square root of negative number -9
	// sqrt(16) = 4
}

func ExampleImap() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	words := []string{"alpha", "beta", "gamma"}
	// Always range with both values: a failed item yields its error, and
	// the iteration goes on.
	for s, err := range mp.Imap(ctx, p, exampleUpper, slices.Values(words)) {
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(s)
	}
	// Output:
	// ALPHA
	// BETA
	// GAMMA
}

func ExampleImapUnordered() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	// The results come as the workers finish them, in any order.
	var squares []int
	for sq, err := range mp.ImapUnordered(ctx, p, exampleSquare, slices.Values([]int{3, 1, 4, 1, 5})) {
		if err != nil {
			log.Fatal(err)
		}
		squares = append(squares, sq)
	}
	slices.Sort(squares)
	fmt.Println(squares)
	// Output: [1 1 9 16 25]
}

func ExampleApply() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	sq, err := mp.Apply(ctx, p, exampleSquare, 12)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sq)
	// Output: 144
}

func ExampleApplyAsync() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	// Start three calls at once, then wait for each.
	var futures []*mp.Future[int]
	for _, x := range []int{7, 8, 9} {
		futures = append(futures, mp.ApplyAsync(ctx, p, exampleSquare, x))
	}
	for _, f := range futures {
		sq, err := f.Wait(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(sq)
	}
	// Output:
	// 49
	// 64
	// 81
}

func ExampleMapAsync() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	// Start the Map, do something else, then collect its results.
	fu := mp.MapAsync(ctx, p, exampleSquare, []int{1, 2, 3, 4, 5})
	fmt.Println("started")
	squares, err := fu.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(squares)
	// Output:
	// started
	// [1 4 9 16 25]
}

func ExamplePool_Shutdown() {
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	f := mp.ApplyAsync(ctx, p, exampleSleep, 50*time.Millisecond)

	// Shutdown lets the call already made run to completion; ctx bounds
	// how long it may take before the pool is closed anyway.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
	d, err := f.Wait(ctx)
	fmt.Println(d, err)

	// Calls made after Shutdown fail.
	_, err = mp.Apply(ctx, p, exampleSquare, 2)
	fmt.Println(errors.Is(err, mp.ErrPoolClosed))
	// Output:
	// 50ms <nil>
	// true
}

func ExampleSpawn() {
	ctx := context.Background()
	proc, err := mp.Spawn(ctx, exampleIsWorker, struct{}{}, mp.WorkerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	// Wait returns the function's result once the process has exited.
	inChild, err := proc.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker in the child:", inChild)
	fmt.Println("worker in the parent:", mp.Current().Worker)
	fmt.Println("exit code:", proc.ExitCode())
	// Output:
	// worker in the child: true
	// worker in the parent: false
	// exit code: 0
}
