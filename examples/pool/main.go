// Pool squares the numbers 0 to 9 in a pool of worker processes, as
// Python's Pool.map does, and prints the results in the order of the input.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp"
)

// square runs in the pool's workers.
var square = mp.Register("examples.pool.square", func(ctx context.Context, x int) (int, error) {
	return x * x, nil
})

func main() {
	mp.Main() // in a worker, this serves tasks and never returns
	ctx := context.Background()

	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	nums := make([]int, 10)
	for i := range nums {
		nums[i] = i
	}
	squares, err := mp.Map(ctx, p, square, nums)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(squares)
}
