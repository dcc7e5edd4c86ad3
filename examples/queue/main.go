//go:build linux

// Queue is the classic producer and consumer of Python's multiprocessing
// tutorials: a producer process puts ticket1 to ticket4 in a Queue, the
// parent puts ticket5, and a consumer process prints each ticket as it
// gets it. The first form ends the consumer with a sentinel value, as
// Python programs do; the second closes the queue, and the consumer's loop
// over All ends when it has taken what is left.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/go-mp/mp"
)

// sentinel tells the consumer of the first form to stop.
const sentinel = "STOP"

type job struct {
	Tickets  *mp.Queue[string]
	Sentinel bool // the consumer stops at the sentinel, not at Close
}

var (
	produce = mp.Register("queue.produce", func(ctx context.Context, j job) (int, error) {
		for i := 1; i <= 4; i++ {
			if err := j.Tickets.Put(ctx, fmt.Sprintf("ticket%d", i)); err != nil {
				return i - 1, err
			}
		}
		return 4, nil
	})
	consume = mp.Register("queue.consume", func(ctx context.Context, j job) (int, error) {
		n := 0
		for t, err := range j.Tickets.All(ctx) {
			if err != nil {
				return n, err
			}
			if j.Sentinel && t == sentinel {
				break
			}
			fmt.Println("consumer got", t)
			n++
		}
		return n, nil
	})
)

// run runs one form of the program and returns how many tickets the
// consumer took.
func run(ctx context.Context, useSentinel bool) (int, error) {
	q, err := mp.NewQueue[string](mp.QueueOptions{})
	if err != nil {
		return 0, err
	}
	consumer, err := mp.Spawn(ctx, consume, job{Tickets: q, Sentinel: useSentinel}, mp.WorkerOptions{})
	if err != nil {
		return 0, err
	}
	producer, err := mp.Spawn(ctx, produce, job{Tickets: q}, mp.WorkerOptions{})
	if err != nil {
		return 0, err
	}
	if err := q.Put(ctx, "ticket5"); err != nil {
		return 0, err
	}
	if _, err := producer.Wait(ctx); err != nil {
		return 0, err
	}
	if useSentinel {
		err = q.Put(ctx, sentinel)
	} else {
		err = q.Close()
	}
	if err != nil {
		return 0, err
	}
	return consumer.Wait(ctx)
}

func main() {
	mp.Main()
	ctx := context.Background()
	for _, form := range []struct {
		sentinel bool
		name     string
	}{{true, "a sentinel"}, {false, "Close"}} {
		n, err := run(ctx, form.sentinel)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("the consumer took %d tickets, ended by %s\n", n, form.name)
	}
}
