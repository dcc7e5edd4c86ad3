// Process starts one child process that runs a registered function, as
// Python's multiprocessing.Process, and waits for it before going on.
//
// The child inherits the parent's stdout, so its line appears before the
// parent's: Wait returns only once the child has exited.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp"
)

// greet runs in the child process. It takes and returns nothing, so its
// argument and result are struct{}.
var greet = mp.Register("examples.process.greet", func(ctx context.Context, _ struct{}) (struct{}, error) {
	fmt.Println("this is my child process")
	return struct{}{}, nil
})

func main() {
	mp.Main() // in the child, this runs greet and exits
	ctx := context.Background()

	p, err := mp.Spawn(ctx, greet, struct{}{}, mp.WorkerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := p.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("Parent process continues execution")
}
