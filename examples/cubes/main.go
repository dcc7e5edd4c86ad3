// Cubes computes the cubes of 1 to 6 in a pool of ten worker processes.
// There are more workers than items: Map hands each item to the next free
// worker, and the results still come back in the order of the input.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp"
)

// cube runs in the pool's workers.
var cube = mp.Register("examples.cubes.cube", func(ctx context.Context, x int) (int, error) {
	return x * x * x, nil
})

func main() {
	mp.Main() // in a worker, this serves tasks and never returns
	ctx := context.Background()

	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 10})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	cubes, err := mp.Map(ctx, p, cube, []int{1, 2, 3, 4, 5, 6})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cubes)
}
