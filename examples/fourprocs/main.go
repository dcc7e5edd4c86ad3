// Fourprocs runs four child processes at once, each printing its own number
// and its process ID, and collects the result of each: the child's PID.
//
// Spawn returns as soon as a process has started, so starting them all
// before waiting for any runs them concurrently; their lines may come in any
// order.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/go-mp/mp"
)

// printNumber runs in a child process. It returns the child's PID, so that
// the parent can see which process did the work.
var printNumber = mp.Register("examples.fourprocs.print", func(ctx context.Context, n int) (int, error) {
	pid := mp.Current().PID
	fmt.Printf("number %d from process %d\n", n, pid)
	return pid, nil
})

func main() {
	mp.Main() // in a child, this runs printNumber and exits
	ctx := context.Background()
	fmt.Println("parent", os.Getpid())

	procs := make([]*mp.Process[int], 4)
	for i := range procs {
		p, err := mp.Spawn(ctx, printNumber, i+1, mp.WorkerOptions{})
		if err != nil {
			log.Fatal(err)
		}
		procs[i] = p
	}
	pids := make([]int, len(procs))
	for i, p := range procs {
		pid, err := p.Wait(ctx)
		if err != nil {
			log.Fatal(err)
		}
		pids[i] = pid
	}
	fmt.Println("child pids:", pids)
	fmt.Println("All number printing is complete")
}
