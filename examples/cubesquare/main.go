// Cubesquare runs two different functions in two child processes at once,
// one printing the square of 10 and the other its cube, and waits for both.
// The two children's lines may come in either order; the parent's comes last.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp"
)

var (
	printSquare = mp.Register("examples.cubesquare.square", func(ctx context.Context, n int) (struct{}, error) {
		fmt.Println("Square:", n*n)
		return struct{}{}, nil
	})
	printCube = mp.Register("examples.cubesquare.cube", func(ctx context.Context, n int) (struct{}, error) {
		fmt.Println("Cube:", n*n*n)
		return struct{}{}, nil
	})
)

func main() {
	mp.Main() // in a child, this runs its function and exits
	ctx := context.Background()

	square, err := mp.Spawn(ctx, printSquare, 10, mp.WorkerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	cube, err := mp.Spawn(ctx, printCube, 10, mp.WorkerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := square.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := cube.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("Done!")
}
