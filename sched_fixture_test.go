package mp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/spawn"
	"github.com/go-mp/mp/internal/wire"
)

// The scheduler's decisions, tested where they are made, without
// processes: a pool is built with slots and no supervisors, units are put
// in flight by step as the engine does, and the frames a worker would send
// are handed to handle. Nothing here starts a worker or waits on a real
// clock.

// schedPool returns a pool of n slots with no workers running: every slot
// is starting until serve (below) makes it serving.
func schedPool(n int, opts PoolOptions) *Pool {
	p := &Pool{
		opts:       opts,
		grace:      100 * time.Millisecond,
		hardMemory: opts.WorkerMemoryLimit,
		done:       make(chan struct{}),
	}
	p.stats.RestartCauses = make(map[string]int)
	p.run = workers{p}
	for i := range n {
		p.slots = append(p.slots, &slot{p: p, n: i, wake: make(chan struct{}, 1)})
	}
	return p
}

// serveForTest makes s serving, with a worker connection that is never written
// to: a plan's frames are looked at, not sent.
func (s *slot) serveForTest() *workerConn {
	wc := &workerConn{child: &spawn.Child{Cmd: &exec.Cmd{Process: &os.Process{Pid: 1000 + s.n}}}}
	s.wc, s.state = wc, slotServing
	return wc
}

// testSink is a call's sink that records what the pool gives it.
type testSink struct {
	resolved []string // describe(u) and the kind of its error, in order
	grown    int
}

func (k *testSink) resolve(u *unit, res wire.Result, err error) {
	k.resolved = append(k.resolved, describe(u)+" "+errKind(err))
}
func (k *testSink) grow(n int)            { k.grown += n }
func (k *testSink) progress(*unit, int)   {}
func (k *testSink) forget(*unit)          {}
func (c *call) testSink() *testSink       { return c.sink.(*testSink) }
func schedCall(ctx context.Context) *call { return schedCallTimeout(ctx, 0) }

func schedCallTimeout(ctx context.Context, timeout time.Duration) *call {
	return &call{ctx: ctx, fn: "f", timeout: timeout, sink: &testSink{}}
}

// schedUnits makes units of c of the given sizes, of consecutive items.
func schedUnits(c *call, sizes ...int) []*unit {
	encode := func(off, n int) ([]byte, []*handle, error) { return fmt.Appendf(nil, "%d+%d", off, n), nil, nil }
	var units []*unit
	index := 0
	for _, n := range sizes {
		u := newUnit(c, index, n, encode, index)
		u.args, _, _ = encode(index, n)
		units = append(units, u)
		index += n
	}
	return units
}

// submitForTest queues units as Pool.submit does, without a kick.
func (p *Pool) submitForTest(units ...*unit) {
	p.queue.push(units...)
	p.outstanding += len(units)
}

// describe names a unit by its items and attempt: "[2,5)a1".
func describe(u *unit) string {
	return fmt.Sprintf("[%d,%d)a%d", u.index, u.index+u.n, u.attempt)
}

// errKind names the kind of a unit's outcome.
func errKind(err error) string {
	var exit *ExitError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrPoolClosed):
		return "closed"
	case errors.Is(err, ErrTaskTimeout):
		return "timeout"
	case errors.Is(err, ErrMemoryLimit):
		return "memory"
	case errors.Is(err, ErrWorkerStart):
		return "start"
	case errors.Is(err, wire.ErrMalformed):
		return "malformed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.As(err, &exit):
		return "exit"
	}
	return err.Error()
}

// queued empties the pool's queue and describes what it held, in order.
func (p *Pool) queuedForTest() []string {
	var got []string
	for u := p.queue.pop(); u != nil; u = p.queue.pop() {
		got = append(got, describe(u))
	}
	return got
}

// kinds describes a plan's frames: "task 1, revoke 2".
func kinds(frames []frame) string {
	var b strings.Builder
	for i, f := range frames {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v %d", f.kind, f.id)
	}
	return b.String()
}

// resultFrame is the frame of a worker that ran task id of one item.
func resultFrame(id uint64) wire.Frame {
	return wire.Frame{Kind: wire.KindResult, ID: id, Payload: wire.AppendResultHeader(nil, wire.Result{N: 1})}
}

// mustStep steps s at now and fails t if s had no worker serving.
func mustStep(t *testing.T, s *slot, now time.Time, mem memSample) plan {
	t.Helper()
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	d := s.step(now, mem)
	if d.wc == nil {
		t.Fatalf("step: slot %d has no worker serving (state %v)", s.n, s.state)
	}
	return d
}
