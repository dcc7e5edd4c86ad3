// Gamma computes the gamma function of 0.5 and of 1 to 10 in a pool of
// four worker processes, and prints one line for each as the results
// arrive. Imap yields the results in the order of the input, whichever
// worker finishes first, so the output is always the same.
package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"slices"

	"github.com/go-mp/mp"
)

// gamma runs in the pool's workers.
var gamma = mp.Register("examples.gamma.gamma", func(ctx context.Context, x float64) (float64, error) {
	return math.Gamma(x), nil
})

func main() {
	mp.Main() // in a worker, this serves tasks and never returns
	ctx := context.Background()

	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	xs := []float64{0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	i := 0
	// Range with both values: a failed item yields its error and the
	// iteration goes on.
	for y, err := range mp.Imap(ctx, p, gamma, slices.Values(xs)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("Gamma(%g) = %g\n", xs[i], y)
		i++
	}
}
