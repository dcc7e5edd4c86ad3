package mp

import (
	"fmt"
	"sync/atomic"

	"github.com/go-mp/mp/internal/wire"
)

// A ring's header and records are untrusted input: any process that has
// the ring mapped can write anything there (a stray write in cgo code is
// enough). So every position and length read from them is checked before
// it is used, and one that put and get never write makes the call fail
// with a *CorruptError naming the ring's object, rather than slice out of
// bounds or write past the ring (issue 18; FuzzRingGet).

// corrupt returns the error of a ring found corrupt, naming the process
// that last put in it, as the header says.
func (r ring) corrupt(format string, args ...any) error {
	return &CorruptError{
		Object: r.what,
		PID:    int(atomic.LoadUint32(r.w(rSender))),
		Detail: fmt.Sprintf(format, args...),
	}
}

// checkSpan returns an error unless head to tail is whole records that
// the ring can hold: each a multiple of recHeader, tail at most a ring
// ahead of head (and not behind it: the difference is unsigned).
func (r ring) checkSpan(head, tail uint64) error {
	switch {
	case head%recHeader != 0 || tail%recHeader != 0:
		return r.corrupt("its head %d or tail %d is not at a record", head, tail)
	case tail-head > uint64(len(r.data)):
		return r.corrupt("its tail %d is not within %d bytes after its head %d", tail, len(r.data), head)
	}
	return nil
}

// checkRecord returns an error unless the record at head, of n bytes with
// flags, is one put writes, lies within what is published (up to tail),
// and keeps the message it is part of, of had bytes before it, within the
// ring's message limit.
func (r ring) checkRecord(head, tail uint64, n uint32, flags uint32, had int) error {
	if size := recHeader + (uint64(n)+recHeader-1)&^(recHeader-1); size > tail-head {
		return r.corrupt("the record at %d says %d bytes, and %d are published", head, n, tail-head-recHeader)
	}
	if flags&^(recFirst|recLast|recAbort) != 0 || flags&recAbort != 0 && (flags != recAbort || n != 0) {
		return r.corrupt("the record at %d has flags %#x", head, flags)
	}
	if total := uint64(had) + uint64(n); total > uint64(r.maxMessage()) {
		return r.corrupt("the message at %d has more than %d bytes, the most a message may have", head, r.maxMessage())
	}
	return nil
}

// maxMessage is the largest message the ring's producers put (they check
// it before they put), within what any message may have.
func (r ring) maxMessage() int {
	m := int(atomic.LoadUint32(r.w(rMaxMessage)))
	if m <= 0 || m > wire.MaxFrameLimit {
		return wire.MaxFrameLimit
	}
	return m
}
