// Cubes computes the cubes of 1 to 6 in a pool of ten worker processes.
// There are more workers than items: Map hands each item to the next free
// worker, and the results still come back in the order of the input.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/go-mp/mp"
)

// cube runs in the pool's workers.
var cube = mp.Register("examples.cubes.cube", func(ctx context.Context, x int) (int, error) {
	return x * x * x, nil
})

// options are the pool's.
var options = mp.PoolOptions{Workers: 10}

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

// run maps cube over 1 to 6 on p, and prints the results. It works on any
// pool: its test runs it on worker hosts through NATS too.
func run(ctx context.Context, p *mp.Pool, w io.Writer) error {
	cubes, err := mp.Map(ctx, p, cube, []int{1, 2, 3, 4, 5, 6})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, cubes)
	return nil
}
