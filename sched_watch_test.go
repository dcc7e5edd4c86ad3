package mp

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestSchedDepth checks how many tasks a worker holds (depthLocked) as the
// moving average of its tasks' times (observeLocked) goes: as many as run
// in a millisecond, between 2 and 64, the average moving an eighth of the
// way to each new time.
func TestSchedDepth(t *testing.T) {
	t.Parallel()
	const µs = time.Microsecond
	tests := []struct {
		name string
		took []time.Duration // the times observed, in order
		want int
	}{
		{name: "no task seen yet: the least", want: minDepth},
		{name: "100µs tasks: ten", took: []time.Duration{100 * µs}, want: 10},
		{name: "fast tasks: at most 64", took: []time.Duration{10 * µs}, want: maxDepth},
		{name: "a task under a microsecond counts as one", took: []time.Duration{0}, want: maxDepth},
		{name: "slow tasks: the least", took: []time.Duration{5 * time.Millisecond}, want: minDepth},
		{name: "an eighth of the way: 100µs then 900µs average 200µs", took: []time.Duration{100 * µs, 900 * µs}, want: 5},
		{name: "one slow task among fast ones brings the depth down at once", took: []time.Duration{100 * µs, 10 * time.Millisecond}, want: minDepth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := schedPool(1, PoolOptions{}).slots[0]
			for _, d := range tt.took {
				s.observeLocked(d)
			}
			if got := s.depthLocked(); got != tt.want {
				t.Errorf("got %d, want %d (average %v)", got, tt.want, s.avgTask)
			}
		})
	}
}

// TestSchedDepthObserved checks the depth as the engine adapts it: a
// worker first holds two tasks; once its head took 100µs, from when it was
// sent to its result, it is sent as many more as make ten.
func TestSchedDepthObserved(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := schedPool(1, PoolOptions{})
		s := p.slots[0]
		wc := s.serveForTest()
		units := schedUnits(schedCall(context.Background()), slices.Repeat([]int{1}, 20)...)
		p.submitForTest(units...)
		if d := mustStep(t, s, time.Now(), memSample{}); len(d.frames) != minDepth {
			t.Fatalf("first step: got %d tasks, want %d", len(d.frames), minDepth)
		}
		time.Sleep(100 * time.Microsecond)
		if err := s.handle(wc, resultFrame(units[0].id)); err != nil {
			t.Fatal(err)
		}
		mustStep(t, s, time.Now(), memSample{})
		if got := len(s.inflight); got != 10 {
			t.Errorf("tasks held after a 100µs head: got %d, want 10 (average %v)", got, s.avgTask)
		}
	})
}

// watchStep is one step of the slot of TestSchedWatch: the clock moves on,
// something happens, and step decides.
type watchStep struct {
	after    time.Duration // how far the clock moves before the step
	cancel   bool          // the call is cancelled before the step
	rss      uint64        // the worker's size, sampled while the head runs, if not 0
	staleRSS bool          // sampled while an earlier task ran
	// What step decides:
	frames    string
	kill      cause         // the cause the worker is killed for, or causeNone if it is not
	next      time.Duration // how long the supervisor may sleep
	failed    string        // the kind of the head's error, or "" if it has none
	splitting bool          // the head is to be run again in smaller chunks
}

// TestSchedWatch checks the watch of deadlines, cancellations and memory
// (watchLocked, through step), with the clock of a synctest bubble: when
// the head is cancelled or split, which frames go out, when the worker is
// killed and for what, and how long the supervisor may sleep meanwhile.
func TestSchedWatch(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	const never = time.Hour // the sleep of a slot with nothing to watch
	tests := []struct {
		name     string
		sizes    []int         // the items of the call's units
		timeout  time.Duration // the pool's TaskTimeout
		deadline time.Duration // the call's ctx's, if not 0
		memLimit int64         // WorkerMemoryLimit
		steps    []watchStep
	}{
		{
			name: "within its timeout, a task is left alone", sizes: []int{1}, timeout: time.Second,
			steps: []watchStep{
				{frames: "task 1", next: time.Second},
				{after: 999 * ms, next: ms},
			},
		},
		{
			name: "a task past its timeout is cancelled, and killed after the grace", sizes: []int{1}, timeout: time.Second,
			steps: []watchStep{
				{frames: "task 1", next: time.Second},
				{after: 500 * ms, next: 500 * ms},
				{after: 500 * ms, frames: "cancel 1", failed: "timeout", next: 100 * ms},
				{after: 50 * ms, failed: "timeout", next: 50 * ms},
				{after: 50 * ms, failed: "timeout", kill: causeTimeout, next: never},
			},
		},
		{
			// 3 items of 1s, each with the worker's overrun grace, and the grace once more.
			name: "a chunk past its budget is split, with no cancel frame", sizes: []int{3}, timeout: time.Second,
			steps: []watchStep{
				{frames: "task 1", next: 3400 * ms},
				{after: 3400 * ms, splitting: true, next: 100 * ms},
				{after: 100 * ms, splitting: true, kill: causeTimeout, next: never},
			},
		},
		{
			name: "a cancelled call: its head is cancelled, its queued task revoked", sizes: []int{1, 1},
			steps: []watchStep{
				{frames: "task 1, task 2", next: never},
				{after: 10 * ms, cancel: true, frames: "cancel 1, revoke 2", failed: "canceled", next: 100 * ms},
				{after: 100 * ms, failed: "canceled", kill: causeCancel, next: never},
			},
		},
		{
			name: "the call's deadline passes", sizes: []int{1, 1}, deadline: 2 * time.Second,
			steps: []watchStep{
				{frames: "task 1, task 2", next: never},
				{after: 2 * time.Second, frames: "cancel 1, revoke 2", failed: "deadline", next: 100 * ms},
			},
		},
		{
			name: "a worker over WorkerMemoryLimit is killed for the task it runs", sizes: []int{1}, memLimit: 100,
			steps: []watchStep{
				{frames: "task 1", next: 50 * ms},
				{after: 50 * ms, rss: 100, next: 50 * ms},
				{after: 50 * ms, rss: 101, failed: "memory", kill: causeMemory, next: 50 * ms},
			},
		},
		{
			name: "a size sampled while an earlier task ran blames nobody", sizes: []int{1}, memLimit: 100,
			steps: []watchStep{
				{frames: "task 1", next: 50 * ms},
				{after: 50 * ms, rss: 1000, staleRSS: true, next: 50 * ms},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { runWatch(t, tt.sizes, tt.timeout, tt.deadline, tt.memLimit, tt.steps) })
		})
	}
}

// runWatch runs a case of TestSchedWatch in its bubble.
func runWatch(t *testing.T, sizes []int, timeout, deadline time.Duration, memLimit int64, steps []watchStep) {
	p := schedPool(1, PoolOptions{TaskTimeout: timeout, WorkerMemoryLimit: memLimit})
	s := p.slots[0]
	s.serveForTest()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if deadline > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, deadline)
		defer stop()
	}
	c := schedCallTimeout(ctx, timeout)
	// As a call's collector does: its end cancels its units.
	defer context.AfterFunc(ctx, func() { p.cancelCall(c) })()
	units := schedUnits(c, sizes...)
	p.submitForTest(units...)
	head := units[0]
	for i, st := range steps {
		time.Sleep(st.after)
		if st.cancel {
			cancel(context.Canceled)
		}
		synctest.Wait() // the call's cancellation is done
		var mem memSample
		if st.rss > 0 {
			mem = memSample{rss: st.rss, head: head.id}
			if st.staleRSS {
				mem.head = head.id - 1
			}
		}
		d := mustStep(t, s, time.Now(), mem)
		if got := kinds(d.frames); got != st.frames {
			t.Errorf("step %d: frames: got %q, want %q", i, got, st.frames)
		}
		var kill cause
		if d.kill {
			kill = s.kill.cause
			if s.killID != head.id {
				t.Errorf("step %d: killed for task %d, want %d, the head", i, s.killID, head.id)
			}
		}
		if kill != st.kill {
			t.Errorf("step %d: killed for %q, want %q", i, kill, st.kill)
		}
		if d.next != st.next {
			t.Errorf("step %d: next: got %v, want %v", i, d.next, st.next)
		}
		var failed string
		if head.failed != nil {
			failed = errKind(head.failed)
		}
		if failed != st.failed || head.splitting != st.splitting {
			t.Errorf("step %d: the head's failure %q, splitting %v; want %q, %v", i, failed, head.splitting, st.failed, st.splitting)
		}
	}
}
