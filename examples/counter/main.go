//go:build linux

// Counter has four processes add 100,000 each to one shared number: under
// the number's lock the total is exactly 400,000; without it, processes
// read the same value and write back the same sum, and updates are lost,
// as in the classic Python multiprocessing.Value tutorial.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp"
)

// job is what each process gets: the shared number, and whether to lock it.
type job struct {
	Count  *mp.Value[int64]
	Locked bool
}

var add = mp.Register("counter.add", func(ctx context.Context, j job) (struct{}, error) {
	for range 100_000 {
		if j.Locked {
			if err := j.Count.Update(ctx, func(n *int64) { *n++ }); err != nil {
				return struct{}{}, err
			}
		} else {
			j.Count.Store(j.Count.Load() + 1) // read, then write: not atomic
		}
	}
	return struct{}{}, nil
})

// count runs four processes that add to a new shared number, and returns it.
func count(ctx context.Context, locked bool) (int64, error) {
	n, err := mp.NewValue[int64](0)
	if err != nil {
		return 0, err
	}
	defer n.Close()
	var procs []*mp.Process[struct{}]
	for range 4 {
		p, err := mp.Spawn(ctx, add, job{Count: n, Locked: locked}, mp.WorkerOptions{})
		if err != nil {
			return 0, err
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if _, err := p.Wait(ctx); err != nil {
			return 0, err
		}
	}
	return n.Load(), nil
}

func main() {
	mp.Main()
	ctx := context.Background()
	total, err := count(ctx, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("with the lock:", total)
	total, err = count(ctx, false)
	if err != nil {
		log.Fatal(err)
	}
	if total < 400_000 {
		fmt.Println("without the lock: updates were lost")
	} else {
		fmt.Println("without the lock: no update was lost this time")
	}
	fmt.Printf("(without the lock the total was %d)\n", total)
}
