package mp

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// TestSchedHandle checks what the parent decides on a frame from a worker
// (slot.handle): a unit's outcome, or its return to the queue, and the
// kill an overrun report asks for. The worker holds one unit of n items,
// task 1, with the flight state the case gives it.
func TestSchedHandle(t *testing.T) {
	t.Parallel()
	overrun := func(id uint64, item uint32) wire.Frame {
		return wire.Frame{Kind: wire.KindOverrun, ID: id, Payload: binary.BigEndian.AppendUint32(nil, item)}
	}
	tests := []struct {
		name     string
		n        int
		flight   flight
		closing  bool
		frame    wire.Frame
		resolved []string // the call's outcomes
		queued   []string
		overrun  int    // the unit's overrun after
		kill     cause  // the slot's kill cause after
		killID   uint64 // and the task it is for
	}{
		{name: "a result: the value", n: 1, frame: resultFrame(1), resolved: []string{"[0,1)a0 ok"}},
		{
			name: "a result of another size than the task's: malformed", n: 2, frame: resultFrame(1),
			resolved: []string{"[0,2)a0 malformed"},
		},
		{
			name: "a result after the parent's clock passed the timeout, within the grace: the value is kept", n: 1,
			flight: flight{failed: timeoutError(time.Second), cause: causeTimeout}, frame: resultFrame(1),
			resolved: []string{"[0,1)a0 ok"},
		},
		{
			name: "a result for a cancelled task: the cancellation", n: 1,
			flight: flight{failed: context.Canceled, cause: causeCancel}, frame: resultFrame(1),
			resolved: []string{"[0,1)a0 canceled"},
		},
		{
			name: "revoked: back to the queue as it was", n: 3,
			flight: flight{stolen: true, revokeSent: true}, frame: wire.Frame{Kind: wire.KindRevoked, ID: 1},
			queued: []string{"[0,3)a0"},
		},
		{
			name: "revoked after it was cancelled: the cancellation", n: 1,
			flight: flight{failed: context.Canceled, cause: causeCancel}, frame: wire.Frame{Kind: wire.KindRevoked, ID: 1},
			resolved: []string{"[0,1)a0 canceled"},
		},
		{
			name: "revoked while the pool closes: ErrPoolClosed", n: 1, closing: true,
			flight: flight{stolen: true, revokeSent: true}, frame: wire.Frame{Kind: wire.KindRevoked, ID: 1},
			resolved: []string{"[0,1)a0 closed"},
		},
		{
			name: "an overrun of the running chunk: that item is marked, the worker killed for the chunk", n: 4,
			frame: overrun(1, 2), overrun: 3, kill: causeTimeout, killID: 1,
		},
		{
			name: "an overrun of a task whose result came first: the worker is killed for that task", n: 1,
			frame: overrun(7, 0), kill: causeTimeout, killID: 7,
		},
		{
			name: "an overrun of a cancelled task: the cancellation stands", n: 4,
			flight: flight{failed: context.Canceled, cause: causeCancel}, frame: overrun(1, 2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := schedPool(1, PoolOptions{})
			s := p.slots[0]
			wc := s.serveForTest()
			c := schedCallTimeout(t.Context(), time.Second)
			u := schedUnits(c, tt.n)[0]
			p.submitForTest(u)
			mustStep(t, s, time.Now(), memSample{})
			id := u.id
			u.flight = tt.flight
			u.id = id
			p.closing = tt.closing

			if err := s.handle(wc, tt.frame); err != nil {
				t.Fatalf("handle: %v", err)
			}
			if got := c.testSink().resolved; !slices.Equal(got, tt.resolved) {
				t.Errorf("outcomes: got %q, want %q", got, tt.resolved)
			}
			if got := p.queuedForTest(); !slices.Equal(got, tt.queued) {
				t.Errorf("queued: got %q, want %q", got, tt.queued)
			}
			if u.overrun != tt.overrun {
				t.Errorf("overrun: got %d, want %d", u.overrun, tt.overrun)
			}
			if s.kill.cause != tt.kill || s.killID != tt.killID {
				t.Errorf("kill: got %q for task %d, want %q for %d", s.kill.cause, s.killID, tt.kill, tt.killID)
			}
			if len(tt.resolved)+len(tt.queued) > 0 && len(s.inflight) != 0 {
				t.Errorf("still in flight: %d units, want none", len(s.inflight))
			}
		})
	}
}
