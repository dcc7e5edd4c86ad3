package mp_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type queueJob struct {
	Q    *mp.Queue[string]
	From string
	N    int
	Size int              // bytes of padding per message
	Got  *mp.Value[int64] // counts the messages got, if not nil
}

var (
	// queueProduce puts N messages "From-i", each padded to Size bytes.
	queueProduce = mp.Register("test.queue.produce", func(ctx context.Context, j queueJob) (int, error) {
		pad := strings.Repeat(".", j.Size)
		for i := 0; i < j.N || j.N < 0; i++ { // a negative N: until killed
			if err := j.Q.Put(ctx, fmt.Sprintf("%s-%d%s", j.From, i, pad)); err != nil {
				return i, err
			}
		}
		return j.N, nil
	})
	// queueConsume gets messages until the queue is closed and empty, and
	// returns them, padding cut.
	queueConsume = mp.Register("test.queue.consume", func(ctx context.Context, j queueJob) ([]string, error) {
		var got []string
		for v, err := range j.Q.All(ctx) {
			if err != nil {
				return got, err
			}
			got = append(got, strings.TrimRight(v, "."))
			if j.Got != nil {
				j.Got.Add(1)
			}
			j.Q.TaskDone()
		}
		return got, nil
	})
)

// consumed waits for consumers and returns how many messages came from
// each producer, checking each consumer's order (checkStreams).
func consumed(t *testing.T, ctx context.Context, cons []*mp.Process[[]string]) map[string]int {
	t.Helper()
	total := map[string]int{}
	for _, c := range cons {
		part, err := c.Wait(ctx)
		if err != nil {
			t.Fatalf("a consumer: %v", err)
		}
		for from, k := range checkStreams(t, part) {
			total[from] += k
		}
	}
	return total
}

// checkStreams checks that the messages ("from-i") a consumer got from
// each producer come in the order it put them, and returns how many came
// from each.
func checkStreams(t *testing.T, got []string) map[string]int {
	t.Helper()
	last, count := map[string]int{}, map[string]int{}
	for _, m := range got {
		from, is, ok := strings.Cut(m, "-")
		i, err := strconv.Atoi(is)
		if !ok || err != nil {
			t.Fatalf("message %q", m)
		}
		if l, seen := last[from]; seen && i <= l {
			t.Fatalf("from %s: message %d after %d", from, i, l)
		}
		last[from] = i
		count[from]++
	}
	return count
}

func TestQueueManyProcesses(t *testing.T) {
	// Two producer processes and the parent put; two consumer processes
	// get; small and large (streamed) messages.
	t.Parallel()
	for _, size := range []int{0, 300 << 10} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			t.Parallel()
			q, err := mp.NewQueue[string](mp.QueueOptions{BufferSize: 256 << 10})
			if err != nil {
				t.Fatal(err)
			}
			ctx := bounded(t, 60*time.Second)
			n := 2000
			if size > 0 {
				n = 30
			}
			var prods []*mp.Process[int]
			for _, from := range []string{"a", "b"} {
				p := spawn(t, ctx, queueProduce, queueJob{Q: q, From: from, N: n, Size: size})
				prods = append(prods, p)
			}
			var cons []*mp.Process[[]string]
			for range 2 {
				c := spawn(t, ctx, queueConsume, queueJob{Q: q})
				cons = append(cons, c)
			}
			pad := strings.Repeat(".", size)
			for i := range n {
				if err := q.Put(ctx, fmt.Sprintf("p-%d%s", i, pad)); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range prods {
				if _, err := p.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Join(ctx); err != nil {
				t.Fatal(err)
			}
			q.Close()
			var got []string
			for _, c := range cons {
				part, err := c.Wait(ctx)
				if err != nil {
					t.Fatal(err)
				}
				checkStreams(t, part)
				got = append(got, part...)
			}
			if len(got) != 3*n {
				t.Errorf("%d messages, want %d", len(got), 3*n)
			}
			slices.Sort(got)
			if len(slices.Compact(got)) != 3*n {
				t.Errorf("a message came out twice")
			}
			if err := q.Put(ctx, "late"); !errors.Is(err, mp.ErrQueueClosed) {
				t.Errorf("Put on a closed queue: got %v", err)
			}
			if _, err := q.Get(ctx); !errors.Is(err, mp.ErrQueueClosed) {
				t.Errorf("Get on a closed, empty queue: got %v", err)
			}
		})
	}
}

func TestQueueProducerKilled(t *testing.T) {
	// A producer SIGKILLed while it puts, large messages streaming through
	// a small ring: the other producer's messages all arrive once, in
	// order; the dead one's arrive in order, at most once; nothing hangs.
	t.Parallel()
	q, err := mp.NewQueue[string](mp.QueueOptions{BufferSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := bounded(t, 60*time.Second)
	const n, size = 200, 100 << 10
	doomed := spawn(t, ctx, queueProduce, queueJob{Q: q, From: "k", N: -1, Size: size})
	other := spawn(t, ctx, queueProduce, queueJob{Q: q, From: "a", N: n, Size: size})
	var cons []*mp.Process[[]string]
	for range 2 {
		c := spawn(t, ctx, queueConsume, queueJob{Q: q})
		cons = append(cons, c)
	}
	time.Sleep(100 * time.Millisecond) // let the streams interleave: the kill lands mid-message or not, both are fine
	doomed.Kill()
	doomed.Wait(ctx)
	if _, err := other.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	q.Close()
	total := consumed(t, ctx, cons)
	if total["a"] != n {
		t.Errorf("the live producer's messages: %d arrived, want %d", total["a"], n)
	}
	t.Logf("%d messages of the killed producer arrived", total["k"])
	checkDrained(t, ctx, q)
}

func TestQueueConsumerKilled(t *testing.T) {
	// A consumer SIGKILLed while it gets: the other goes on, and at most
	// the one message the dead one was taking is lost.
	t.Parallel()
	q, err := mp.NewQueue[string](mp.QueueOptions{BufferSize: 64 << 10, MaxLen: 2})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := mp.NewValue[int64](0)
	defer got.Close()
	ctx := bounded(t, 60*time.Second)
	const n, size = 300, 100 << 10
	doomed := spawn(t, ctx, queueConsume, queueJob{Q: q, Got: got})
	other := spawn(t, ctx, queueConsume, queueJob{Q: q})
	prod := spawn(t, ctx, queueProduce, queueJob{Q: q, From: "a", N: n, Size: size})
	for got.Load() < 5 {
		if ctx.Err() != nil {
			t.Fatal("the doomed consumer got nothing")
		}
		time.Sleep(time.Millisecond)
	}
	doomed.Kill()
	doomed.Wait(ctx)
	if _, err := prod.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	q.Close()
	part, err := other.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkStreams(t, part)
	if lost := n - len(part) - int(got.Load()); lost < 0 || lost > 1 {
		t.Errorf("%d messages lost (%d got by the live consumer, %d by the dead one), want at most 1", lost, len(part), got.Load())
	}
	checkDrained(t, ctx, q)
}

func TestQueueBadInput(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	q, err := mp.NewQueue[string](mp.QueueOptions{MaxLen: 2, MaxMessageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.TryGet(); !errors.Is(err, mp.ErrQueueEmpty) {
		t.Errorf("TryGet on an empty queue: got %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := q.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get on an empty queue past the deadline: got %v", err)
	}
	if err := q.Put(ctx, strings.Repeat("x", 200)); !errors.Is(err, mp.ErrMessageTooLarge) {
		t.Errorf("Put over MaxMessageSize: got %v", err)
	}
	for _, v := range []string{"one", "two"} {
		if err := q.TryPut(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.TryPut("three"); !errors.Is(err, mp.ErrQueueFull) {
		t.Errorf("TryPut past MaxLen: got %v", err)
	}
	if err := q.Put(short, "three"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put past MaxLen, past the deadline: got %v", err)
	}
	if q.Len() != 2 {
		t.Errorf("Len: got %d, want 2", q.Len())
	}
	q.Close()
	q.Close()
	if err := q.Put(ctx, "four"); !errors.Is(err, mp.ErrQueueClosed) {
		t.Errorf("Put on a closed queue: got %v", err)
	}
	for _, want := range []string{"one", "two"} {
		if v, err := q.Get(ctx); v != want || err != nil {
			t.Errorf("Get from a closed queue: got %q, %v; want %q", v, err, want)
		}
	}
	if _, err := q.Get(ctx); !errors.Is(err, mp.ErrQueueClosed) {
		t.Errorf("Get on a closed, empty queue: got %v", err)
	}
	if err := q.TaskDone(); err != nil {
		t.Errorf("TaskDone: %v", err)
	}
	if err := q.TaskDone(); err != nil {
		t.Errorf("TaskDone: %v", err)
	}
	if err := q.TaskDone(); err == nil {
		t.Error("a TaskDone more than values put was taken")
	}
	if err := q.Join(ctx); err != nil {
		t.Errorf("Join: %v", err)
	}

	fq, err := mp.NewQueue[func()](mp.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fq.Put(ctx, func() {}); err == nil || !strings.Contains(err.Error(), "cannot encode") {
		t.Errorf("Put of a func: got %v", err)
	}
	if _, err := mp.NewQueue[int](mp.QueueOptions{MaxLen: -1}); err == nil {
		t.Error("a queue of MaxLen -1 was made")
	}
}

func TestQueueManyAtOnce(t *testing.T) {
	// Six producers and six consumers on one small ring, values of every
	// size from a few bytes to three times the ring, so that records wrap
	// and large values stream while others wait: each value arrives once,
	// whole, in its producer's order.
	t.Parallel()
	q, err := mp.NewQueue[string](mp.QueueOptions{BufferSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := bounded(t, 120*time.Second)
	const producers, consumers, n = 6, 6, 150
	var cons []*mp.Process[[]string]
	for range consumers {
		c := spawn(t, ctx, queueConsume, queueJob{Q: q})
		cons = append(cons, c)
	}
	var prods []*mp.Process[int]
	for i := range producers {
		p := spawn(t, ctx, queueProduce, queueJob{Q: q, From: fmt.Sprint("p", i), N: n, Size: i * 2500})
		prods = append(prods, p)
	}
	for _, p := range prods {
		if _, err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	total := consumed(t, ctx, cons)
	for i := range producers {
		if from := fmt.Sprint("p", i); total[from] != n {
			t.Errorf("from %s: %d values arrived, want %d", from, total[from], n)
		}
	}
}

// checkDrained checks that a closed queue whose values were all taken, by
// consumers of which some were killed, counts none left, and that a new
// queue state works: its MaxLen, if any, is whole.
func checkDrained(t *testing.T, ctx context.Context, q *mp.Queue[string]) {
	t.Helper()
	if n := q.Len(); n != 0 {
		t.Errorf("Len of a drained queue after a kill: %d", n)
	}
	if _, err := q.TryGet(); !errors.Is(err, mp.ErrQueueClosed) {
		t.Errorf("TryGet on the drained, closed queue: %v", err)
	}
}
