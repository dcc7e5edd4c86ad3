// Worklog runs four work items of different lengths on a pool of two
// worker processes, as the classic Python multiprocessing Pool example
// does. Each item sleeps for its number of "seconds" (100ms each here, to
// keep the example quick), and the worker prints when it starts and ends.
//
// With ChunkSize(1) each item is a task of its own, so no item waits in a
// chunk behind a long one: A (5s) keeps one worker busy while the other
// runs B (2s), C (1s) and D (3s), and all is done in about 6s rather than
// the 11s of one worker. The final lines, printed by the parent from the
// results, show which worker ran each item.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/go-mp/mp"
)

// second is how long one "second" of work lasts.
const second = 100 * time.Millisecond

// item is a piece of work: a name and how many seconds it takes.
type item struct {
	Name    string
	Seconds int
}

// ran says which worker process ran an item.
type ran struct {
	Name   string // the item's
	Worker string // the worker's, as mp.Current reports it: PoolWorker-N
	PID    int
}

// work runs in the pool's workers. Their stdout is the parent's, so the
// lines they print come out with the parent's.
var work = mp.Register("examples.worklog.work", func(ctx context.Context, it item) (ran, error) {
	fmt.Printf("Process %s waiting %d seconds\n", it.Name, it.Seconds)
	select {
	case <-time.After(time.Duration(it.Seconds) * second):
	case <-ctx.Done():
		return ran{}, ctx.Err()
	}
	fmt.Printf("Process %s Finished.\n", it.Name)
	cur := mp.Current()
	return ran{Name: it.Name, Worker: cur.Name, PID: cur.PID}, nil
})

func main() {
	mp.Main() // in a worker, this serves tasks and never returns
	ctx := context.Background()

	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	items := []item{{"A", 5}, {"B", 2}, {"C", 1}, {"D", 3}}
	// One item per task, so that a free worker takes the next item at once
	// rather than a chunk of items being queued behind a long one.
	runs, err := mp.Map(ctx, p, work, items, mp.ChunkSize(1))
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range runs {
		fmt.Printf("%s ran on %s (pid %d)\n", r.Name, r.Worker, r.PID)
	}
}
