// Gamma computes the gamma function of 0.5 and of 1 to 10 in a pool of
// four worker processes, and prints one line for each as the results
// arrive. Imap yields the results in the order of the input, whichever
// worker finishes first, so the output is always the same.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"slices"

	"github.com/go-mp/mp"
)

// gamma runs in the pool's workers.
var gamma = mp.Register("examples.gamma.gamma", func(ctx context.Context, x float64) (float64, error) {
	return math.Gamma(x), nil
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

// run prints the gamma function of 0.5 and of 1 to 10, computed on p, as
// the results arrive. It works on any pool: its test runs it on worker
// hosts through NATS too.
func run(ctx context.Context, p *mp.Pool, w io.Writer) error {
	xs := []float64{0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	i := 0
	// Range with both values: a failed item yields its error and the
	// iteration goes on.
	for y, err := range mp.Imap(ctx, p, gamma, slices.Values(xs)) {
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "Gamma(%g) = %g\n", xs[i], y)
		i++
	}
	return nil
}
