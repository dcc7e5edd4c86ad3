// Pool squares the numbers 0 to 9 in a pool of worker processes, as
// Python's Pool.map does, and prints the results in the order of the input.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/go-mp/mp"
)

// square runs in the pool's workers.
var square = mp.Register("examples.pool.square", func(ctx context.Context, x int) (int, error) {
	return x * x, nil
})

// options are the pool's.
var options = mp.PoolOptions{Workers: 4}

func main() {
	mp.Main() // in a worker, this serves tasks and never returns
	ctx := context.Background()

	p, err := mp.NewPool(ctx, options)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if err := run(ctx, p, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run maps square over 0 to 9 on p, and prints the results. It works on
// any pool: its test runs it on worker hosts through NATS too.
func run(ctx context.Context, p *mp.Pool, w io.Writer) error {
	nums := make([]int, 10)
	for i := range nums {
		nums[i] = i
	}
	squares, err := mp.Map(ctx, p, square, nums)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, squares)
	return nil
}
