package mp

import "slices"

// runQueue holds the units waiting for a worker: one FIFO per call, served
// in turn. A worker that asks for a unit gets the next call's oldest one,
// so calls share the workers fairly: an Apply made during a long Map waits
// for about one task of the Map, not for all of it. Within a call, units
// keep their order (Imap yields in order, and a Map's early items finish
// first). The calls with units queued form a ring, so that every operation
// is O(1) however many calls wait (a service may have thousands of Applies
// queued). It is guarded by the pool's mutex.
type runQueue struct {
	next  *callUnits // the call whose turn is next; nil if none waits
	calls int        // calls with units queued (call.queued set)
	units int        // units queued
	items int        // items in them
}

// callUnits is one call's queued units, oldest first, and its place in
// the ring of calls. Each call has its own (call.queue), used while it has
// units queued: queueing allocates nothing, even with thousands of calls.
type callUnits struct {
	c          *call
	units      []*unit
	prev, next *callUnits
	one        [1]*unit // units' first array: most calls have one unit
}

func (q *runQueue) len() int { return q.units }

// fifo returns c's FIFO, adding it to the ring, last in turn, if it has none.
func (q *runQueue) fifo(c *call) *callUnits {
	if c.queued != nil {
		return c.queued
	}
	cu := &c.queue
	if cu.units == nil {
		cu.units = cu.one[:0]
	}
	cu.c = c
	c.queued = cu
	q.calls++
	if q.next == nil {
		cu.prev, cu.next = cu, cu
		q.next = cu
	} else { // just before the next one: the last of this round
		last := q.next.prev
		cu.prev, cu.next = last, q.next
		last.next, q.next.prev = cu, cu
	}
	return cu
}

// push queues units behind those of their calls.
func (q *runQueue) push(units ...*unit) {
	for _, u := range units {
		cu := q.fifo(u.c)
		cu.units = append(cu.units, u)
		q.units++
		q.items += u.n
	}
}

// pushFront queues units, which came back from a worker, ahead of the
// other units of their calls, keeping their order.
func (q *runQueue) pushFront(units ...*unit) {
	for i := len(units) - 1; i >= 0; i-- {
		u := units[i]
		cu := q.fifo(u.c)
		cu.units = append(cu.units, nil)
		copy(cu.units[1:], cu.units)
		cu.units[0] = u
		q.units++
		q.items += u.n
	}
}

// pop returns the oldest unit of the call whose turn it is, or nil.
func (q *runQueue) pop() *unit {
	cu := q.next
	if cu == nil {
		return nil
	}
	u := cu.units[0]
	cu.units[0] = nil
	if len(cu.units) == 1 {
		cu.units = cu.units[:0] // keep its array, for the call's next units
	} else {
		cu.units = cu.units[1:]
	}
	q.units--
	q.items -= u.n
	q.next = cu.next
	if len(cu.units) == 0 {
		q.unlink(cu)
	}
	return u
}

// unlink takes cu out of the ring.
func (q *runQueue) unlink(cu *callUnits) {
	if cu.next == cu {
		q.next = nil
	} else {
		cu.prev.next, cu.next.prev = cu.next, cu.prev
		if q.next == cu {
			q.next = cu.next
		}
	}
	cu.c.queued = nil
	q.calls--
	cu.prev, cu.next = nil, nil
}

// removeCall takes every queued unit of c out of the queue.
func (q *runQueue) removeCall(c *call) []*unit {
	cu := c.queued
	if cu == nil {
		return nil
	}
	units := slices.Clone(cu.units) // cu and its array are used again
	clear(cu.units)
	cu.units = cu.units[:0]
	q.unlink(cu)
	for _, u := range units {
		q.units--
		q.items -= u.n
	}
	return units
}

// removeWhere takes every queued unit of the calls that match out of the
// queue. It visits every call queued: for a cancel, not a hot path.
func (q *runQueue) removeWhere(match func(*call) bool) []*unit {
	var calls []*call
	if cu := q.next; cu != nil {
		for {
			if match(cu.c) {
				calls = append(calls, cu.c)
			}
			if cu = cu.next; cu == q.next {
				break
			}
		}
	}
	var units []*unit
	for _, c := range calls {
		units = append(units, q.removeCall(c)...)
	}
	return units
}

// removeAll empties the queue and returns what it held.
func (q *runQueue) removeAll() []*unit {
	var all []*unit
	for q.next != nil {
		cu := q.next
		all = append(all, cu.units...)
		clear(cu.units)
		cu.units = cu.units[:0]
		q.unlink(cu) // and its call's queued with it: the call may queue again
	}
	*q = runQueue{}
	return all
}
