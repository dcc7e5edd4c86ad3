//go:build unix

// Crash maps a function over 20 items on a pool of two workers, where four
// items go wrong in four different ways, and prints what became of each.
//
//   - Item 3 makes a real segmentation fault, at an address that is mapped
//     but not accessible. Go cannot recover from that: the runtime prints
//     "unexpected fault address" and "fatal error: fault", and the worker
//     exits with code 2.
//   - Item 7 calls os.Exit(3).
//   - Item 11 loops forever without looking at its context, so only the
//     pool's TaskTimeout stops it: its worker is killed.
//   - Item 15 panics. The worker recovers the panic and lives on.
//
// A dead worker fails only the item it was running, and the pool replaces
// it; the other items succeed, and MapAll reports every item's error.
//
// MapAll sends the items in chunks, here of 3 (ceil(20 / (4 × 2 workers))).
// When a worker dies under a chunk, its items are run again one at a time,
// so that the bad one fails alone: the bad item runs twice, then, and costs
// two workers. An item that overruns TaskTimeout is reported by its worker,
// and fails at once. The last line counts five workers replaced for three
// bad items. Use mp.ChunkSize(1) where that matters more than the cost of
// one round trip per item.
//
// The workers' stderr (where the Go runtime writes its crash report) goes to
// io.Discard; the pool keeps its first and last few kilobytes in the
// *mp.ExitError, whose message quotes the line that says why it died.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-mp/mp"
)

// work runs in the pool's workers.
var work = mp.Register("examples.crash.work", func(ctx context.Context, x int) (int, error) {
	switch x {
	case 3:
		fault()
	case 7:
		os.Exit(3)
	case 11:
		for {
		}
	case 15:
		panic(fmt.Sprintf("item %d is bad", x))
	}
	return x * x, nil
})

// fault writes to a page that the process maps without access rights. The
// kernel sends SIGSEGV, and as the address is not near zero, the Go runtime
// does not turn it into a nil pointer panic: it is fatal.
func fault() {
	page, err := syscall.Mmap(-1, 0, os.Getpagesize(), syscall.PROT_NONE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	page[0] = 1
}

// options are the pool's: two workers, whose stderr is dropped, and a
// TaskTimeout.
var options = mp.PoolOptions{
	Workers:     2,
	TaskTimeout: 500 * time.Millisecond,
	Worker:      mp.WorkerOptions{Stderr: io.Discard},
}

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
	st := p.Stats()
	var causes []string
	for _, cause := range slices.Sorted(maps.Keys(st.RestartCauses)) {
		causes = append(causes, fmt.Sprintf("%s: %d", cause, st.RestartCauses[cause]))
	}
	fmt.Printf("workers replaced: %d (%s)\n", st.Restarts, strings.Join(causes, ", "))
}

// run maps work over 0 to 19 on p, and prints what became of each item.
// It works on any pool: its test runs it on worker hosts through NATS too,
// where the same items fail in the same ways.
func run(ctx context.Context, p *mp.Pool, w io.Writer) error {
	in := make([]int, 20)
	for i := range in {
		in[i] = i
	}
	// Bound the whole call, whatever goes wrong.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	out, errs, err := mp.MapAll(ctx, p, work, in)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)

	failed := 0
	for i := range in {
		if errs == nil || errs[i] == nil {
			fmt.Fprintf(w, "task %d: ok %d\n", i, out[i])
			continue
		}
		failed++
		fmt.Fprintf(w, "task %d: %s\n", i, describe(errs[i]))
	}
	fmt.Fprintf(w, "%d ok, %d failed, in %v\n", len(in)-failed, failed, elapsed.Round(100*time.Millisecond))
	return nil
}

// describe says how a task failed. err is a *mp.TaskError, which names the
// function and the item; its cause says what happened.
func describe(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprint("timeout: ", err)
	}
	if e, ok := errors.AsType[*mp.ExitError](err); ok {
		return fmt.Sprintf("exit code %d: %v", e.ExitCode(), err)
	}
	if _, ok := errors.AsType[*mp.PanicError](err); ok {
		return fmt.Sprint("panic: ", err)
	}
	return fmt.Sprint("error: ", err)
}
