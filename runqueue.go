package mp

// runQueue holds the units waiting for a worker: one FIFO per call, served
// in turn. A worker that asks for a unit gets the next call's oldest one,
// so calls share the workers fairly: an Apply made during a long Map waits
// for about one task of the Map, not for all of it. Within a call, units
// keep their order (Imap yields in order, and a Map's early items finish
// first). It is guarded by the pool's mutex.
type runQueue struct {
	turns  []*callUnits // calls with units queued, in turn order
	next   int          // index in turns of the call whose turn is next
	byCall map[*call]*callUnits
	units  int          // units queued
	items  int          // items in them
	free   []*callUnits // emptied, for reuse: most calls have one unit
}

// callUnits is one call's queued units, oldest first.
type callUnits struct {
	c     *call
	units []*unit
}

func (q *runQueue) len() int { return q.units }

// fifo returns c's FIFO, adding it to the turns if it has none.
func (q *runQueue) fifo(c *call) *callUnits {
	if cu := q.byCall[c]; cu != nil {
		return cu
	}
	if q.byCall == nil {
		q.byCall = make(map[*call]*callUnits)
	}
	var cu *callUnits
	if n := len(q.free); n > 0 {
		cu, q.free = q.free[n-1], q.free[:n-1]
		cu.c = c
	} else {
		cu = &callUnits{c: c}
	}
	q.byCall[c] = cu
	q.turns = append(q.turns, cu)
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
	if len(q.turns) == 0 {
		return nil
	}
	i := q.next % len(q.turns)
	cu := q.turns[i]
	u := cu.units[0]
	cu.units[0] = nil
	if len(cu.units) == 1 {
		cu.units = cu.units[:0] // keep its array, for the next call's units
	} else {
		cu.units = cu.units[1:]
	}
	q.units--
	q.items -= u.n
	if len(cu.units) == 0 {
		q.drop(i)
		q.next = i // the call after it has moved into its place
	} else {
		q.next = i + 1
	}
	return u
}

// drop removes the i'th call from the turns.
func (q *runQueue) drop(i int) {
	cu := q.turns[i]
	delete(q.byCall, cu.c)
	q.turns = append(q.turns[:i], q.turns[i+1:]...)
	if len(cu.units) == 0 && len(q.free) < 64 {
		cu.c, cu.units = nil, cu.units[:0]
		q.free = append(q.free, cu)
	}
	if q.next > i {
		q.next--
	}
}

// removeCall takes every queued unit of c out of the queue.
func (q *runQueue) removeCall(c *call) []*unit {
	cu := q.byCall[c]
	if cu == nil {
		return nil
	}
	for i, t := range q.turns {
		if t == cu {
			q.drop(i)
			break
		}
	}
	for _, u := range cu.units {
		q.units--
		q.items -= u.n
	}
	return cu.units
}

// removeAll empties the queue and returns what it held.
func (q *runQueue) removeAll() []*unit {
	var all []*unit
	for _, cu := range q.turns {
		all = append(all, cu.units...)
	}
	*q = runQueue{}
	return all
}
