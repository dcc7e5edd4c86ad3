package bench_test

import (
	"context"
	"testing"

	"github.com/go-mp/mp"
)

// Messaging: the sizes, as in py/bench.py.
const (
	queueMsgs = 200_000
	pipeTrips = 10_000
)

type msgArgs struct {
	Q *mp.Queue[int]
	C *mp.Conn[int]
	N int
}

var (
	// queuePut puts 0 to N-1 in the queue.
	queuePut = mp.Register("bench.queue-put", func(ctx context.Context, a msgArgs) (int, error) {
		for i := range a.N {
			if err := a.Q.Put(ctx, i); err != nil {
				return i, err
			}
		}
		return a.N, nil
	})
	// queueGet gets N values from the queue and returns their sum.
	queueGet = mp.Register("bench.queue-get", func(ctx context.Context, a msgArgs) (int, error) {
		sum := 0
		for range a.N {
			v, err := a.Q.Get(ctx)
			if err != nil {
				return sum, err
			}
			sum += v
		}
		return sum, nil
	})
	// pipeEcho sends back each value it receives, plus one, N times.
	pipeEcho = mp.Register("bench.pipe-echo", func(ctx context.Context, a msgArgs) (int, error) {
		for i := range a.N {
			v, err := a.C.Recv(ctx)
			if err != nil {
				return i, err
			}
			if err := a.C.Send(ctx, v+1); err != nil {
				return i, err
			}
		}
		return a.N, nil
	})
)

// queueOnce sends queueMsgs small values from producers to consumers,
// through one Queue, each side in its own processes; the parent only
// starts them and waits. It returns the sum the consumers got.
func queueOnce(ctx context.Context, producers, consumers int) (int, error) {
	q, err := mp.NewQueue[int](mp.QueueOptions{})
	if err != nil {
		return 0, err
	}
	defer q.Close()
	var procs []*mp.Process[int]
	start := func(f mp.Func[msgArgs, int], n int) error {
		p, err := mp.Spawn(ctx, f, msgArgs{Q: q, N: n}, mp.WorkerOptions{})
		procs = append(procs, p)
		return err
	}
	for range consumers {
		if err := start(queueGet, queueMsgs/consumers); err != nil {
			return 0, err
		}
	}
	for range producers {
		if err := start(queuePut, queueMsgs/producers); err != nil {
			return 0, err
		}
	}
	sum := 0
	for i, p := range procs {
		n, err := p.Wait(ctx)
		if err != nil {
			return 0, err
		}
		if i < consumers {
			sum += n
		}
	}
	return sum, nil
}

// BenchmarkQueue sends 200,000 small values from one process to another
// through a Queue. An op is the whole run, process starts included.
func BenchmarkQueue(b *testing.B) {
	for b.Loop() {
		if _, err := queueOnce(b.Context(), 1, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(queueMsgs*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkQueueMany is BenchmarkQueue with 2 producers and 2 consumers.
func BenchmarkQueueMany(b *testing.B) {
	for b.Loop() {
		if _, err := queueOnce(b.Context(), 2, 2); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(queueMsgs*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPipe bounces a small value between the parent and a child over
// a Pipe. An op is one round trip.
func BenchmarkPipe(b *testing.B) {
	ctx := b.Context()
	a, end, err := mp.Pipe[int]()
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	child, err := mp.Spawn(ctx, pipeEcho, msgArgs{C: end, N: 1 << 30}, mp.WorkerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	end.Close()
	defer child.Kill()
	v := 0
	for range 100 { // the child is up and warm
		a.Send(ctx, v)
		v, _ = a.Recv(ctx)
	}
	b.ResetTimer()
	for range b.N {
		if err := a.Send(ctx, v); err != nil {
			b.Fatal(err)
		}
		if v, err = a.Recv(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
