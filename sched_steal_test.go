package mp

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// otherSlot is what a slot other than the one asking is, for idleLocked.
type otherSlot struct {
	state    slotState
	inflight int
	retire   cause
}

// TestSchedIdle checks the rule of idleLocked: a slot does not queue a
// task behind a running one while another worker can take it at once (it
// is serving and idle) or soon (it is starting, and starts succeed).
func TestSchedIdle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		asker      otherSlot // the slot that asks; never counts for itself
		others     []otherSlot
		startFails int
		closing    bool
		want       bool
	}{
		{name: "another worker serving and idle", others: []otherSlot{{state: slotServing}}, want: true},
		{name: "another worker busy", others: []otherSlot{{state: slotServing, inflight: 1}}},
		{name: "one busy, one idle", others: []otherSlot{{state: slotServing, inflight: 3}, {state: slotServing}}, want: true},
		{name: "another worker idle but to be retired", others: []otherSlot{{state: slotServing, retire: causeMaxTasks}}},
		{name: "another worker starting while starts succeed", others: []otherSlot{{state: slotStarting}}, want: true},
		{name: "another worker dying, to start again", others: []otherSlot{{state: slotDying}}, want: true},
		{name: "another worker starting while starts fail", others: []otherSlot{{state: slotStarting}}, startFails: 1},
		{name: "another worker starting while the pool closes", others: []otherSlot{{state: slotStarting}}, closing: true},
		{name: "the asker alone, idle itself", asker: otherSlot{state: slotServing}},
		{name: "no other worker", asker: otherSlot{state: slotServing, inflight: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := schedPool(1+len(tt.others), PoolOptions{})
			p.startFails, p.closing = tt.startFails, tt.closing
			for i, o := range append([]otherSlot{tt.asker}, tt.others...) {
				s := p.slots[i]
				s.state, s.retire = o.state, o.retire
				if o.inflight > 0 {
					s.inflight = schedUnits(schedCall(t.Context()), make([]int, o.inflight)...)
				}
			}
			if got := p.idleLocked(p.slots[0]); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// queuedFacts is what a unit in flight is, for stealLocked.
type queuedFacts struct{ stolen, revokeSent, failed bool }

// TestSchedSteal checks stealLocked: an idle worker takes the later half
// of the tasks queued behind a running one, from the first worker that
// has any it may take; a task already stolen, revoked or failed is not
// taken again. Each entry of others is a worker's units in flight ([0]
// runs); want says which of them are stolen after, by worker.
func TestSchedSteal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		others [][]queuedFacts
		want   []string
	}{
		{name: "the later half of four queued", others: [][]queuedFacts{make([]queuedFacts, 5)}, want: []string{"3 4"}},
		{name: "the later half of three queued, rounded up", others: [][]queuedFacts{make([]queuedFacts, 4)}, want: []string{"2 3"}},
		{name: "the one queued", others: [][]queuedFacts{make([]queuedFacts, 2)}, want: []string{"1"}},
		{name: "nothing behind a lone running task", others: [][]queuedFacts{make([]queuedFacts, 1)}, want: []string{""}},
		{name: "from the first worker only", others: [][]queuedFacts{make([]queuedFacts, 3), make([]queuedFacts, 3)}, want: []string{"2", ""}},
		{
			name:   "not a task revoked, failed or stolen already",
			others: [][]queuedFacts{{{}, {}, {}, {revokeSent: true}, {failed: true}, {}}},
			want:   []string{"5"},
		},
		{
			name:   "from the next worker when the first has none to give",
			others: [][]queuedFacts{{{}, {stolen: true}}, {{}, {}}},
			want:   []string{"", "1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := schedPool(1+len(tt.others), PoolOptions{})
			thief := p.slots[0]
			thief.serveForTest()
			for i, facts := range tt.others {
				o := p.slots[i+1]
				o.serveForTest()
				o.inflight = schedUnits(schedCall(t.Context()), slices.Repeat([]int{1}, len(facts))...)
				for j, f := range facts {
					u := o.inflight[j]
					u.stolen, u.revokeSent = f.stolen, f.revokeSent
					if f.failed {
						u.failed = fmt.Errorf("test: failed")
					}
				}
			}
			before := make(map[*unit]bool)
			for _, o := range p.slots[1:] {
				for _, u := range o.inflight {
					before[u] = u.stolen
				}
			}
			p.stealLocked(thief)
			for i, o := range p.slots[1:] {
				var got []string
				for j, u := range o.inflight {
					if u.stolen && !before[u] {
						got = append(got, fmt.Sprint(j))
					}
				}
				if got := strings.Join(got, " "); got != tt.want[i] {
					t.Errorf("worker %d: got %q stolen, want %q", i, got, tt.want[i])
				}
				if rescan := len(got) > 0; o.rescan != rescan {
					t.Errorf("worker %d: rescan %v, want %v", i, o.rescan, rescan)
				}
			}
		})
	}
}

// TestSchedStealRevokes checks what a steal makes the robbed worker's
// slot do: one revoke frame per unit stolen, at its next step, not again
// at the one after; and the revoked frame puts the unit back in the queue,
// as it was, for the idle worker.
func TestSchedStealRevokes(t *testing.T) {
	t.Parallel()
	p := schedPool(2, PoolOptions{})
	o, thief := p.slots[0], p.slots[1]
	wc := o.serveForTest()
	thief.serveForTest()
	o.avgTask = 100 * time.Microsecond // a depth of 10
	thief.inflight = schedUnits(schedCall(t.Context()), 1)
	units := schedUnits(schedCall(t.Context()), 1, 1, 1, 1, 1)
	p.submitForTest(units...)
	now := time.Now()
	if d := mustStep(t, o, now, memSample{}); kinds(d.frames) != "task 1, task 2, task 3, task 4, task 5" {
		t.Fatalf("got frames %q, want tasks 1 to 5", kinds(d.frames))
	}
	thief.inflight = nil
	p.stealLocked(thief)
	if d := mustStep(t, o, now, memSample{}); kinds(d.frames) != "revoke 4, revoke 5" {
		t.Errorf("after the steal: got frames %q, want revokes of 4 and 5", kinds(d.frames))
	}
	if d := mustStep(t, o, now, memSample{}); kinds(d.frames) != "" {
		t.Errorf("the step after: got frames %q, want none", kinds(d.frames))
	}
	p.cancels++ // another call was cancelled: the slot looks at all it holds again
	if d := mustStep(t, o, now, memSample{}); kinds(d.frames) != "" {
		t.Errorf("after a cancel of another call: got frames %q, want none (the revokes went out)", kinds(d.frames))
	}
	if err := o.handle(wc, wire.Frame{Kind: wire.KindRevoked, ID: units[3].id}); err != nil {
		t.Fatal(err)
	}
	if got, want := p.queuedForTest(), []string{"[3,4)a0"}; !slices.Equal(got, want) {
		t.Errorf("queued after the revoked frame: got %q, want %q", got, want)
	}
	if o.tasks != 4 {
		t.Errorf("tasks counted to the robbed worker: got %d, want 4 (a revoked task never ran there)", o.tasks)
	}
}

// TestSchedStepLeavesTasksForIdle checks the other half of the idle rule,
// in step: a worker takes a task while it has none, but not one to queue
// behind its running task while another worker is idle.
func TestSchedStepLeavesTasksForIdle(t *testing.T) {
	t.Parallel()
	p := schedPool(2, PoolOptions{})
	s, idle := p.slots[0], p.slots[1]
	s.serveForTest()
	idle.serveForTest()
	s.avgTask = 100 * time.Microsecond // a depth of 10
	p.submitForTest(schedUnits(schedCall(t.Context()), 1, 1, 1)...)
	now := time.Now()
	if d := mustStep(t, s, now, memSample{}); kinds(d.frames) != "task 1" {
		t.Errorf("with another worker idle: got frames %q, want the one task s runs", kinds(d.frames))
	}
	// The other worker, now that none is idle, takes its depth: two.
	if d := mustStep(t, idle, now, memSample{}); kinds(d.frames) != "task 2, task 3" {
		t.Errorf("the idle worker: got frames %q, want tasks 2 and 3", kinds(d.frames))
	}
	p.submitForTest(schedUnits(schedCall(t.Context()), 1)...)
	if d := mustStep(t, s, now, memSample{}); kinds(d.frames) != "task 4" {
		t.Errorf("with no worker idle: got frames %q, want task 4 queued behind task 1", kinds(d.frames))
	}
}
