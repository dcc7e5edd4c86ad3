// Command nomain starts a worker without calling mp.Main, which mp must
// refuse with a clear error.
package main

import (
	"context"
	"fmt"

	"github.com/go-mp/mp"
)

var double = mp.Register("double", func(ctx context.Context, x int) (int, error) { return 2 * x, nil })

func main() {
	_, err := mp.Spawn(context.Background(), double, 1, mp.WorkerOptions{})
	fmt.Println("spawn:", err)
	_, err = mp.NewPool(context.Background(), mp.PoolOptions{Workers: 1})
	fmt.Println("pool:", err)
}
