package mp

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// unitFacts is what a unit in flight is when its worker dies.
type unitFacts struct {
	n       int   // items
	attempt int   // times it ran before
	failed  error // decided already: cancelled, timed out, killed for memory
	overrun int   // 1 + the item its worker reported overrunning; 0 if none
	lost    bool  // its task could not be written: the worker was gone
}

// Who the worker was killed for, besides an index of the units in flight.
const (
	killedNone     = -1 // it died by itself
	killedFinished = -2 // for a task whose result came already
)

// TestSchedSettle checks settleLocked, the fate of the units a dead worker
// held, case by case: which fail, with what, and which run again, whole or
// in which parts, with which attempt, in the order they go back to the
// queue; and that every unit is then in exactly one place.
func TestSchedSettle(t *testing.T) {
	t.Parallel()
	exit := &ExitError{PID: 7, remote: &remoteExit{code: 2}}
	raced := &ExitError{PID: 7, remote: &remoteExit{code: raceExitCode}}
	tests := []struct {
		name    string
		units   []unitFacts // in flight, in the order sent: [0] was running
		killed  int         // index of the unit the worker was killed for, or killedNone, killedFinished
		exit    *ExitError
		closing bool
		broken  bool // workers keep failing to start
		retries int
		failed  []string // described, with the kind of error each fails with
		queued  []string // in queue order
	}{
		{
			name:   "failed: a cancelled head fails with its call's cause",
			units:  []unitFacts{{n: 1, failed: context.Canceled}},
			killed: 0, exit: exit,
			failed: []string{"[0,1)a0 canceled"},
		},
		{
			name:   "failed: a unit decided behind the head fails with its own error, not the exit",
			units:  []unitFacts{{n: 1}, {n: 2, failed: context.Canceled}},
			killed: killedNone, exit: exit,
			failed: []string{"[0,1)a0 exit", "[1,3)a0 canceled"},
		},
		{
			name:   "overrun: the item the worker reported fails alone, the others run again",
			units:  []unitFacts{{n: 5, overrun: 3}},
			killed: 0, exit: exit,
			failed: []string{"[2,3)a0 timeout"},
			queued: []string{"[0,2)a0", "[3,5)a0"},
		},
		{
			name:   "overrun of the first item: the rest run again as one",
			units:  []unitFacts{{n: 5, overrun: 1, attempt: 1}},
			killed: 0, exit: exit,
			failed: []string{"[0,1)a1 timeout"},
			queued: []string{"[1,5)a1"},
		},
		{
			name:   "overrun of the last item",
			units:  []unitFacts{{n: 5, overrun: 5}},
			killed: 0, exit: exit,
			failed: []string{"[4,5)a0 timeout"},
			queued: []string{"[0,4)a0"},
		},
		{
			name:   "closing: every unit fails with ErrPoolClosed, the running one too",
			units:  []unitFacts{{n: 1}, {n: 3}},
			killed: killedNone, exit: exit, closing: true,
			failed: []string{"[0,1)a0 closed", "[1,4)a0 closed"},
		},
		{
			name:   "closing: an overrun is not split when nothing will run the parts",
			units:  []unitFacts{{n: 5, overrun: 2}},
			killed: 0, exit: exit, closing: true,
			failed: []string{"[0,5)a0 closed"},
		},
		{
			name:   "closing: a unit decided already keeps its error",
			units:  []unitFacts{{n: 1, failed: context.Canceled}},
			killed: 0, exit: exit, closing: true,
			failed: []string{"[0,1)a0 canceled"},
		},
		{
			name:   "lost: a unit written to a dead worker runs again whole, its attempt kept",
			units:  []unitFacts{{n: 3, lost: true, attempt: 1}},
			killed: killedNone, exit: exit,
			queued: []string{"[0,3)a1"},
		},
		{
			name:   "not started: the units queued behind the head run again, in order",
			units:  []unitFacts{{n: 1}, {n: 2}, {n: 1}},
			killed: killedNone, exit: exit,
			failed: []string{"[0,1)a0 exit"},
			queued: []string{"[1,3)a0", "[3,4)a0"},
		},
		{
			name:   "not at fault: killed for a task that finished, the head started after it",
			units:  []unitFacts{{n: 1}, {n: 1}},
			killed: killedFinished, exit: exit,
			queued: []string{"[0,1)a0", "[1,2)a0"},
		},
		{
			name:   "at fault: killed for the head",
			units:  []unitFacts{{n: 1}, {n: 1}},
			killed: 0, exit: exit,
			failed: []string{"[0,1)a0 exit"},
			queued: []string{"[1,2)a0"},
		},
		{
			name:   "race: the race detector's report is the outcome, not run again",
			units:  []unitFacts{{n: 3}},
			killed: killedNone, exit: raced, retries: 1,
			failed: ifRace([]string{"[0,3)a0 exit"}, nil),
			queued: ifRace(nil, []string{"[0,1)a0", "[1,2)a0", "[2,3)a0"}),
		},
		{
			name:   "split: a chunk whose worker died runs again item by item, so the item at fault fails alone",
			units:  []unitFacts{{n: 4, attempt: 1}, {n: 1}},
			killed: killedNone, exit: exit,
			queued: []string{"[0,1)a1", "[1,2)a1", "[2,3)a1", "[3,4)a1", "[4,5)a0"},
		},
		{
			name:   "split: a chunk of more than 256 items runs again in 16 parts",
			units:  []unitFacts{{n: 320}},
			killed: killedNone, exit: exit,
			queued: parts(0, 320, 16),
		},
		{
			name:   "retry: a single item runs again while it has retries left",
			units:  []unitFacts{{n: 1}},
			killed: killedNone, exit: exit, retries: 2,
			queued: []string{"[0,1)a1"},
		},
		{
			name:   "retry: out of retries, it fails with the exit",
			units:  []unitFacts{{n: 1, attempt: 2}},
			killed: killedNone, exit: exit, retries: 2,
			failed: []string{"[0,1)a2 exit"},
		},
		{
			name:   "no retries: a single item fails with the exit",
			units:  []unitFacts{{n: 1}},
			killed: 0, exit: exit,
			failed: []string{"[0,1)a0 exit"},
		},
		{
			name:   "broken: what would run again fails with the start error instead",
			units:  []unitFacts{{n: 1}, {n: 2}},
			killed: killedNone, exit: exit, broken: true,
			failed: []string{"[0,1)a0 exit", "[1,3)a0 start"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := schedPool(1, PoolOptions{Retries: tt.retries})
			p.closing = tt.closing
			if tt.broken {
				p.broken = fmt.Errorf("%w: test", ErrWorkerStart)
			}
			sizes := make([]int, len(tt.units))
			for i, f := range tt.units {
				sizes[i] = f.n
			}
			c := schedCall(t.Context())
			units := schedUnits(c, sizes...)
			p.outstanding = len(units)
			for i, u := range units {
				f := tt.units[i]
				p.nextID++
				u.id, u.attempt = p.nextID, f.attempt
				u.failed, u.overrun, u.lost = f.failed, f.overrun, f.lost
			}
			var killedID uint64
			switch tt.killed {
			case killedNone:
			case killedFinished:
				killedID = p.nextID + 1 // its result came; it is in flight no more
			default:
				killedID = units[tt.killed].id
			}

			failed, requeue := p.settleLocked(units, tt.exit, killedID)

			var gotFailed []string
			for _, f := range failed {
				gotFailed = append(gotFailed, describe(f.u)+" "+errKind(f.err))
			}
			if !slices.Equal(gotFailed, tt.failed) {
				t.Errorf("failed: got %q, want %q", gotFailed, tt.failed)
			}
			if got := p.queuedForTest(); !slices.Equal(got, tt.queued) {
				t.Errorf("queued: got %q, want %q", got, tt.queued)
			}
			// Every unit is in one place: to be released, or queued; the
			// call counts the same.
			if want := len(failed) + len(requeue); p.outstanding != want {
				t.Errorf("outstanding: got %d, want %d (%d to fail, %d queued)", p.outstanding, want, len(failed), len(requeue))
			}
			if pending := len(units) + c.testSink().grown; pending != len(failed)+len(requeue) {
				t.Errorf("the call's pending units: got %d, want %d", pending, len(failed)+len(requeue))
			}
			for _, u := range requeue {
				if u.failed != nil || u.id != 0 || u.lost || u.overrun != 0 {
					t.Errorf("%s queued again with its flight state: %+v", describe(u), u.flight)
				}
			}
		})
	}
}

// parts describes the parts split cuts items [lo, hi) into.
func parts(lo, hi, k int) []string {
	var out []string
	for i := range k {
		out = append(out, fmt.Sprintf("[%d,%d)a0", lo+(hi-lo)*i/k, lo+(hi-lo)*(i+1)/k))
	}
	return out
}

// ifRace returns yes in a race-enabled build, else no.
func ifRace(yes, no []string) []string {
	if raceEnabled {
		return yes
	}
	return no
}

// TestSchedRevokedThenCrash is the case of commit f96a260, decided in the
// parent: a worker holds X (running) and R; R is stolen for another
// worker, and revoked; Y is sent after it. The worker finishes X, drops R,
// starts Y and dies in it. Y is at fault, and R, which never ran, goes
// back to the queue as it was, but only if the worker said it revoked R
// before it started Y (internal/worker's TestRevokedToldBeforeNextTask
// holds it to that): without that frame R is the head of the units in
// flight when the worker dies, and is blamed for a death it had no part
// in, as the second case shows.
func TestSchedRevokedThenCrash(t *testing.T) {
	t.Parallel()
	for _, revokedFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("revoked frame first %v", revokedFirst), func(t *testing.T) {
			t.Parallel()
			p := schedPool(2, PoolOptions{})
			s, other := p.slots[0], p.slots[1]
			wc := s.serveForTest()
			other.serveForTest()
			s.avgTask = 100 * time.Microsecond // a depth of 10
			one := func() *unit { return schedUnits(schedCall(t.Context()), 1)[0] }
			x, r, y, z := one(), one(), one(), one()
			now := time.Now()

			// The other worker is busy: s takes X and R.
			other.inflight = []*unit{one()}
			p.submitForTest(x, r)
			if d := mustStep(t, s, now, memSample{}); kinds(d.frames) != "task 1, task 2" {
				t.Fatalf("s: got frames %q, want X and R", kinds(d.frames))
			}
			// The other worker's task is done: it steals R, and takes Z.
			other.inflight = nil
			p.stealLocked(other)
			if !r.stolen {
				t.Fatal("R, queued behind X, was not stolen for the idle worker")
			}
			p.submitForTest(z)
			if d := mustStep(t, other, now, memSample{}); kinds(d.frames) != "task 3" {
				t.Fatalf("other: got frames %q, want Z", kinds(d.frames))
			}
			// Y goes to s, and s's worker is told to revoke R.
			p.submitForTest(y)
			if d := mustStep(t, s, now, memSample{}); kinds(d.frames) != "task 4, revoke 2" {
				t.Fatalf("s: got frames %q, want Y and the revoke of R", kinds(d.frames))
			}
			// The worker's frames: X's result, R revoked (if told before Y
			// started), then its death in Y.
			if err := s.handle(wc, resultFrame(x.id)); err != nil {
				t.Fatal(err)
			}
			if revokedFirst {
				if err := s.handle(wc, wire.Frame{Kind: wire.KindRevoked, ID: r.id}); err != nil {
					t.Fatal(err)
				}
			}
			exit := &ExitError{PID: 1000, remote: &remoteExit{code: 2}}
			failed, _ := p.settleLocked(s.inflight, exit, s.killID)

			blamed, innocent := y, r
			if !revokedFirst {
				blamed, innocent = r, y
			}
			if len(failed) != 1 || failed[0].u != blamed || errKind(failed[0].err) != "exit" {
				t.Errorf("failed: got %d units %v, want only %s (the unit at the head) with the exit", len(failed), failed, map[*unit]string{y: "Y", r: "R"}[blamed])
			}
			if u := p.queue.pop(); u != innocent || u.attempt != 0 || u.failed != nil || u.stolen {
				t.Errorf("queued: got %p, want the other unit (%p), whole, attempt 0, flight reset", u, innocent)
			}
			if got := x.c.testSink().resolved; !slices.Equal(got, []string{"[0,1)a0 ok"}) {
				t.Errorf("X: got %q, want its result", got)
			}
		})
	}
}
