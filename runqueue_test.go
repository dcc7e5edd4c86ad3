package mp

import (
	"slices"
	"testing"
)

// TestRunQueue checks the queue's turns: calls are served in turn, each in
// its own order; units that come back go first in their call; a call's
// units can be taken out; and nothing is lost when the queue is emptied.
func TestRunQueue(t *testing.T) {
	t.Parallel()
	a, b, c := &call{fn: "a"}, &call{fn: "b"}, &call{fn: "c"}
	mk := func(cl *call, index int) *unit { return &unit{c: cl, index: index, n: 1} }
	name := func(u *unit) string {
		if u == nil {
			return "-"
		}
		return u.c.fn + string(rune('0'+u.index))
	}
	var q runQueue
	q.push(mk(a, 0), mk(a, 1), mk(a, 2))
	q.push(mk(b, 0))
	q.push(mk(c, 0), mk(c, 1))
	var got []string
	got = append(got, name(q.pop()), name(q.pop())) // a0, then b's turn
	q.pushFront(mk(a, 7), mk(a, 8))                 // came back from a worker
	for q.len() > 0 {
		got = append(got, name(q.pop()))
	}
	got = append(got, name(q.pop()))
	want := []string{"a0", "b0", "c0", "a7", "c1", "a8", "a1", "a2", "-"}
	if !slices.Equal(got, want) {
		t.Errorf("served %v, want %v", got, want)
	}
	if q.items != 0 || q.calls != 0 || q.next != nil || a.queued != nil || b.queued != nil || c.queued != nil {
		t.Errorf("empty queue holds items %d, calls %d", q.items, q.calls)
	}

	q.push(mk(a, 0), mk(b, 0), mk(a, 1), mk(c, 0))
	if got := q.removeCall(a); len(got) != 2 || q.len() != 2 || q.items != 2 {
		t.Errorf("removeCall(a): got %d units, %d left", len(got), q.len())
	}
	if got := name(q.pop()); got != "b0" {
		t.Errorf("after removeCall: got %s, want b0", got)
	}
	q.push(mk(b, 1))
	if all := q.removeAll(); len(all) != 2 || q.len() != 0 || q.pop() != nil {
		t.Errorf("removeAll: got %d units, %d left", len(all), q.len())
	}
	// The calls emptied by removeAll queue again as new ones.
	q.push(mk(b, 2), mk(c, 2))
	got = got[:0]
	for i := 0; q.len() > 0 && i < 4; i++ {
		got = append(got, name(q.pop()))
	}
	if want := []string{"b2", "c2"}; !slices.Equal(got, want) || q.calls != 0 {
		t.Errorf("after removeAll: served %v, want %v, %d calls left", got, want, q.calls)
	}
}

func TestFitting(t *testing.T) {
	units := func(sizes ...int) []*unit {
		var us []*unit
		for _, n := range sizes {
			us = append(us, &unit{n: n})
		}
		return us
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		free  int
		empty bool
		want  int
	}{
		{"all fit", []int{1, 2, 3}, 6, false, 3},
		{"some fit", []int{2, 2, 2}, 5, false, 2},
		{"none fit", []int{3}, 2, false, 0},
		{"no room", []int{1}, 0, false, 0},
		{"full over the bound", []int{1}, -3, false, 0},
		{"a large batch into an empty queue", []int{10, 1}, 4, true, 1},
		{"only the first goes past the bound", []int{10, 10}, 4, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fitting(units(tc.sizes...), tc.free, tc.empty); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
