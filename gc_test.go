package mp_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// gcJob carries the object of one row of TestGCWhileWaiting to the
// worker, which keeps it (gcKept) to release its waiter later.
type gcJob struct {
	Row   string
	Queue *mp.Queue[int]
	Lock  *mp.Lock
	RLock *mp.RLock
	Value *mp.Value[int64]
	Array *mp.Array[int64]
	Sem   *mp.Semaphore
	Event *mp.Event
	Cond  *mp.Condition
	Bar   *mp.Barrier
	Conn  *mp.Conn[[]byte]
}

// gcKept holds, in the worker, the jobs gcHold was given, by row.
var gcKept sync.Map

var (
	// gcHold keeps j, first taking what the row's waiter will wait for.
	gcHold = mp.Register("test.gc.hold", func(ctx context.Context, j gcJob) (string, error) {
		var err error
		switch j.Row {
		case "Lock.Lock":
			err = j.Lock.Lock(ctx)
		case "RLock.Lock":
			err = j.RLock.Lock(ctx)
		case "Value.Lock", "Value.Update":
			err = j.Value.Lock(ctx)
		case "Array.Lock", "Array.Update":
			err = j.Array.Lock(ctx)
		case "Semaphore.Acquire":
			err = j.Sem.Acquire(ctx)
		}
		gcKept.Store(j.Row, j)
		return "", err
	})
	// gcRelease releases the waiter of the row it is given.
	gcRelease = mp.Register("test.gc.release", func(ctx context.Context, row string) (string, error) {
		v, ok := gcKept.Load(row)
		if !ok {
			return "", fmt.Errorf("no job kept for %s", row)
		}
		j := v.(gcJob)
		switch row {
		case "Queue.Put":
			n, err := j.Queue.Get(ctx)
			return fmt.Sprint(n), err
		case "Queue.Get":
			return "", j.Queue.Put(ctx, 7)
		case "Queue.Join":
			if _, err := j.Queue.Get(ctx); err != nil {
				return "", err
			}
			return "", j.Queue.TaskDone()
		case "Lock.Lock":
			return "", j.Lock.Unlock()
		case "RLock.Lock":
			return "", j.RLock.Unlock()
		case "Value.Lock", "Value.Update":
			return "", j.Value.Unlock()
		case "Array.Lock", "Array.Update":
			return "", j.Array.Unlock()
		case "Semaphore.Acquire":
			return "", j.Sem.Release()
		case "Event.Wait":
			j.Event.Set()
			return "", nil
		case "Condition.Wait":
			if err := j.Cond.Lock(ctx); err != nil {
				return "", err
			}
			defer j.Cond.Unlock()
			return "", j.Cond.NotifyAll()
		case "Barrier.Wait":
			i, err := j.Bar.Wait(ctx)
			return fmt.Sprint(i), err
		case "Conn.Recv", "Conn.Poll":
			return "", j.Conn.Send(ctx, []byte("hello"))
		case "Conn.Send":
			b, err := j.Conn.Recv(ctx)
			return fmt.Sprint(len(b)), err
		}
		return "", fmt.Errorf("no row %s", row)
	})
)

// gcRow is a blocking method under test: start makes its object, has the
// worker keep it (and take what the waiter waits for), and starts a
// goroutine that waits in the method, the only one that references the
// object. The waiter's result must be want, and the worker's, when it
// releases it, released.
type gcRow struct {
	name           string
	start          func(ctx context.Context, hold func(gcJob)) <-chan gcResult
	want, released string
}

type gcResult struct {
	v   string
	err error
}

// waiting runs f in a goroutine, and sends what it returns.
func waiting(f func() (string, error)) <-chan gcResult {
	ch := make(chan gcResult, 1)
	go func() {
		v, err := f()
		ch <- gcResult{v, err}
	}()
	return ch
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var gcRows = []gcRow{
	{name: "Queue.Put", released: "1", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		q := must(mp.NewQueue[int](mp.QueueOptions{MaxLen: 1}))
		q.Put(ctx, 1)
		hold(gcJob{Queue: q})
		return waiting(func() (string, error) { return "", q.Put(ctx, 2) })
	}},
	{name: "Queue.Get", want: "7", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		q := must(mp.NewQueue[int](mp.QueueOptions{}))
		hold(gcJob{Queue: q})
		return waiting(func() (string, error) {
			v, err := q.Get(ctx)
			return fmt.Sprint(v), err
		})
	}},
	{name: "Queue.Join", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		q := must(mp.NewQueue[int](mp.QueueOptions{}))
		q.Put(ctx, 1)
		hold(gcJob{Queue: q})
		return waiting(func() (string, error) { return "", q.Join(ctx) })
	}},
	{name: "Lock.Lock", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		l := must(mp.NewLock())
		hold(gcJob{Lock: l})
		return waiting(func() (string, error) { return "", l.Lock(ctx) })
	}},
	{name: "RLock.Lock", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		l := must(mp.NewRLock())
		hold(gcJob{RLock: l})
		return waiting(func() (string, error) { return "", l.Lock(ctx) })
	}},
	{name: "Value.Lock", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		v := must(mp.NewValue[int64](0))
		hold(gcJob{Value: v})
		return waiting(func() (string, error) { return "", v.Lock(ctx) })
	}},
	{name: "Value.Update", want: "42", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		v := must(mp.NewValue[int64](41))
		hold(gcJob{Value: v})
		return waiting(func() (string, error) {
			var got int64
			err := v.Update(ctx, func(p *int64) { *p++; got = *p })
			return fmt.Sprint(got), err
		})
	}},
	{name: "Array.Lock", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		a := must(mp.NewArray[int64](4))
		hold(gcJob{Array: a})
		return waiting(func() (string, error) { return "", a.Lock(ctx) })
	}},
	{name: "Array.Update", want: "[1 2 3]", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		a := must(mp.NewArrayOf[int64](0, 1, 2))
		hold(gcJob{Array: a})
		return waiting(func() (string, error) {
			var got []int64
			err := a.Update(ctx, func(s []int64) {
				for i := range s {
					s[i]++
				}
				got = append(got, s...)
			})
			return fmt.Sprint(got), err
		})
	}},
	{name: "Semaphore.Acquire", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		s := must(mp.NewSemaphore(1))
		hold(gcJob{Sem: s})
		return waiting(func() (string, error) { return "", s.Acquire(ctx) })
	}},
	{name: "Event.Wait", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		e := must(mp.NewEvent())
		hold(gcJob{Event: e})
		return waiting(func() (string, error) { return "", e.Wait(ctx) })
	}},
	{name: "Condition.Wait", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		c := must(mp.NewCondition())
		hold(gcJob{Cond: c})
		// Waiting once it holds the lock: the worker's NotifyAll, under
		// the lock, comes after its Wait began.
		locked := make(chan error, 1)
		ch := waiting(func() (string, error) {
			err := c.Lock(ctx)
			locked <- err
			if err != nil {
				return "", err
			}
			return "", c.Wait(ctx)
		})
		if err := <-locked; err != nil {
			panic(err)
		}
		return ch
	}},
	{name: "Barrier.Wait", want: "0", released: "1", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		b := must(mp.NewBarrier(2))
		hold(gcJob{Bar: b})
		return waiting(func() (string, error) {
			i, err := b.Wait(ctx)
			return fmt.Sprint(i), err
		})
	}},
	{name: "Conn.Recv", want: "hello", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		a, b := must2(mp.Pipe[[]byte]())
		hold(gcJob{Conn: b})
		return waiting(func() (string, error) {
			v, err := a.Recv(ctx)
			return string(v), err
		})
	}},
	{name: "Conn.Poll", want: "true", start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		a, b := must2(mp.Pipe[[]byte]())
		hold(gcJob{Conn: b})
		return waiting(func() (string, error) {
			ok, err := a.Poll(ctx)
			return fmt.Sprint(ok), err
		})
	}},
	{name: "Conn.Send", released: fmt.Sprint(1 << 20), start: func(ctx context.Context, hold func(gcJob)) <-chan gcResult {
		a, b := must2(mp.Pipe[[]byte]())
		hold(gcJob{Conn: b})
		// Bigger than the connection buffers: Send waits for the worker's Recv.
		return waiting(func() (string, error) { return "", a.Send(ctx, make([]byte, 1<<20)) })
	}},
}

func must2[T any](a, b T, err error) (T, T) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// Each blocking method keeps its object, and the memory it waits on,
// while it waits: a goroutine waits on an object nothing else references,
// garbage is collected for 2 s, and a worker then releases it. The rows
// start as subtests (to run one: -run 'TestGCWhileWaiting/Lock.Lock$'),
// and wait through the same 2 s.
func TestGCWhileWaiting(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1}) // one worker: the one that keeps the objects
	ctx := bounded(t, 60*time.Second)
	waiters := map[string]<-chan gcResult{}
	var rows []gcRow
	for _, row := range gcRows {
		t.Run(row.name, func(t *testing.T) {
			hold := func(j gcJob) {
				j.Row = row.name
				if _, err := mp.Apply(ctx, p, gcHold, j); err != nil {
					t.Fatalf("the worker's hold: %v", err)
				}
			}
			waiters[row.name] = row.start(ctx, hold)
			rows = append(rows, row)
		})
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		runtime.GC()
		for _, row := range rows {
			select {
			case r := <-waiters[row.name]:
				t.Fatalf("%s returned before it was released: %q, %v", row.name, r.v, r.err)
			default:
			}
		}
	}
	for _, row := range rows {
		released, err := mp.Apply(ctx, p, gcRelease, row.name)
		if err != nil || released != row.released {
			t.Errorf("%s: the worker's release: %q, %v; want %q", row.name, released, err, row.released)
		}
		select {
		case r := <-waiters[row.name]:
			if r.err != nil || r.v != row.want {
				t.Errorf("%s: got %q, %v; want %q", row.name, r.v, r.err, row.want)
			}
		case <-ctx.Done():
			t.Fatalf("%s: still waiting after it was released", row.name)
		}
	}
}
