package wire

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Task is the body of a KindTask frame: a function name, when it must end,
// and its N arguments, encoded together in Args: as a single value when N is
// 1, as an array of N values otherwise.
type Task struct {
	Func     string
	Deadline time.Time     // zero: none; the caller's deadline
	Timeout  time.Duration // zero: none; counted from when the task starts
	N        int
	Ref      uint64 // the caller's ID for the task, the same each time it runs; 0: the frame's
	Attempt  int    // 0 the first time it runs
	Args     []byte
}

// AppendTaskHeader appends the encoding of everything of t but its Args,
// which follow it to the end of the frame:
//
//	u16 name length, name, i64 deadline (Unix ns, 0 for none),
//	i64 timeout (ns, 0 for none), u32 N, u64 ref, u32 attempt.
//
// The last two are at the header's end, for SetTaskRef.
//
// Sending the header and t.Args as two parts to [Writer.Write] never copies
// the arguments.
func AppendTaskHeader(dst []byte, t Task) []byte {
	dst = slices.Grow(dst, 2+len(t.Func)+8+8+4+taskRefSize)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.Func)))
	dst = append(dst, t.Func...)
	var d int64
	if !t.Deadline.IsZero() && !t.Deadline.After(maxDeadline) {
		d = t.Deadline.UnixNano() // a later one is as good as none, and would overflow
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(d))
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Timeout))
	dst = binary.BigEndian.AppendUint32(dst, uint32(t.N))
	dst = binary.BigEndian.AppendUint64(dst, t.Ref)
	return binary.BigEndian.AppendUint32(dst, uint32(t.Attempt))
}

const taskRefSize = 8 + 4

// SetTaskRef sets the ref and attempt of a header AppendTaskHeader made.
func SetTaskRef(head []byte, ref uint64, attempt int) {
	tail := head[len(head)-taskRefSize:]
	binary.BigEndian.PutUint64(tail, ref)
	binary.BigEndian.PutUint32(tail[8:], uint32(attempt))
}

// maxDeadline is the last deadline a task header can carry: about 2262,
// when Unix nanoseconds overflow an int64.
var maxDeadline = time.Unix(0, 1<<63-1)

// ParseTask decodes a task body. Args aliases b.
func ParseTask(b []byte) (Task, error) {
	var t Task
	p := parser{b: b}
	t.Func = string(p.take(int(p.u16())))
	if d := int64(p.u64()); d != 0 {
		t.Deadline = time.Unix(0, d)
	}
	t.Timeout = time.Duration(p.u64())
	if t.Timeout < 0 && p.err == nil {
		p.err = fmt.Errorf("%w: negative timeout", ErrMalformed)
	}
	t.N = p.int32()
	if t.N == 0 && p.err == nil {
		p.err = fmt.Errorf("%w: task of no items", ErrMalformed)
	}
	t.Ref = p.u64()
	t.Attempt = p.int32()
	t.Args = p.rest()
	return t, p.done("task")
}

// Status is the outcome of one item of a task.
type Status uint8

// The outcomes of an item that failed.
const (
	StatusError Status = 1 // Info is an encoded [ErrorInfo]
	StatusPanic Status = 2 // Info is an encoded [PanicInfo]
	// StatusLost: the item's worker on a worker host died, or it ran past
	// its timeout there; Info is encoded by the mp package.
	StatusLost Status = 3
)

// Failure is one item of a task that did not return a value.
type Failure struct {
	Index  int
	Status Status
	Info   []byte
}

// Result is the body of a KindResult frame: the N results of a task,
// encoded together in Values as the task's arguments were (the zero value
// stands in for an item that failed), and the items that failed.
type Result struct {
	RSS uint64 // the worker's resident set size after the task, if asked for
	N   int
	// All says that every item failed in the same way: Failures holds one
	// failure, of item 0, that stands for all N, so that the report of a
	// chunk that failed whole (its results too large to send, say) does
	// not grow with the chunk. Expand makes it a failure per item.
	All      bool
	Failures []Failure
	Values   []byte
}

// allFailed is the failure count of a result whose one failure is every
// item's (Result.All).
const allFailed = 1<<32 - 1

// Expand turns a result whose one failure stands for all its items (All)
// into one with a failure for each. It allocates for N failures: call it
// only once N is checked against the task's own count of items, since N
// is the peer's word.
func (r *Result) Expand() {
	if !r.All {
		return
	}
	f := r.Failures[0]
	r.Failures = make([]Failure, r.N)
	for i := range r.Failures {
		r.Failures[i] = Failure{Index: i, Status: f.Status, Info: f.Info}
	}
	r.All = false
}

// AppendResultHeader appends the encoding of everything of r but its
// Values, which follow it to the end of the frame:
//
//	u64 rss, u32 N, u32 failure count (all ones if All, then one failure),
//	then per failure: u32 index, u8 status, u32 length, info.
func AppendResultHeader(dst []byte, r Result) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.RSS)
	dst = binary.BigEndian.AppendUint32(dst, uint32(r.N))
	if r.All {
		dst = binary.BigEndian.AppendUint32(dst, allFailed)
	} else {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Failures)))
	}
	for _, f := range r.Failures {
		dst = binary.BigEndian.AppendUint32(dst, uint32(f.Index))
		dst = append(dst, byte(f.Status))
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Info)))
		dst = append(dst, f.Info...)
	}
	return dst
}

// ParseResult decodes a result body. Infos and Values alias b.
func ParseResult(b []byte) (Result, error) {
	var r Result
	p := parser{b: b}
	r.RSS = p.u64()
	r.N = p.int32()
	var nf int
	if len(p.b) >= 4 && binary.BigEndian.Uint32(p.b) == allFailed {
		p.u32()
		r.All, nf = true, 1
		if r.N == 0 && p.err == nil {
			p.err = fmt.Errorf("%w: all of no items failed", ErrMalformed)
		}
	} else {
		nf = p.count(9)
	}
	if nf > r.N && p.err == nil {
		p.err = fmt.Errorf("%w: %d failures among %d items", ErrMalformed, nf, r.N)
	}
	r.Failures = make([]Failure, 0, nf)
	last := -1
	for range nf {
		f := Failure{Index: p.int32(), Status: Status(p.u8())}
		f.Info = p.take(p.int32())
		if p.err == nil && (f.Index <= last || f.Index >= r.N || r.All && f.Index != 0 || f.Status < StatusError || f.Status > StatusLost) {
			p.err = fmt.Errorf("%w: failure of item %d of %d with status %d (after item %d)", ErrMalformed, f.Index, r.N, f.Status, last)
		}
		last = f.Index
		r.Failures = append(r.Failures, f)
	}
	r.Values = p.rest()
	return r, p.done("result")
}

// parser reads big-endian fields and remembers the first error, so decoders
// read straight through and check once.
type parser struct {
	b   []byte
	err error
}

func (p *parser) take(n int) []byte {
	if p.err != nil {
		return nil
	}
	if n < 0 || n > len(p.b) {
		p.err = fmt.Errorf("%w: field of %d bytes, only %d left", ErrMalformed, n, len(p.b))
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) u8() uint8 {
	if b := p.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (p *parser) u16() uint16 {
	if b := p.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (p *parser) u32() uint32 {
	if b := p.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (p *parser) u64() uint64 {
	if b := p.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// int32 reads a u32 that must fit an int32: counts, indexes and lengths.
func (p *parser) int32() int {
	v := p.u32()
	if v > 1<<31-1 && p.err == nil {
		p.err = fmt.Errorf("%w: %d is out of range", ErrMalformed, v)
		return 0
	}
	return int(v)
}

func (p *parser) rest() []byte {
	if p.err != nil {
		return nil
	}
	v := p.b
	p.b = nil
	return v
}

// count reads a count of records of at least min bytes each, and checks it
// against the bytes left, so a forged count cannot make the decoder allocate.
func (p *parser) count(min int) int {
	n := p.int32()
	if p.err == nil && n > len(p.b)/min {
		p.err = fmt.Errorf("%w: %d items claimed in %d bytes", ErrMalformed, n, len(p.b))
		return 0
	}
	return n
}

func (p *parser) done(what string) error {
	if p.err == nil && len(p.b) != 0 {
		p.err = fmt.Errorf("%w: %d trailing bytes after %s", ErrMalformed, len(p.b), what)
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w", what, p.err)
	}
	return nil
}

// ErrorInfo is an error returned by a task function, as it crosses the wire.
type ErrorInfo struct {
	Type     string `cbor:"1,keyasint"`
	Msg      string `cbor:"2,keyasint"`
	Sentinel string `cbor:"3,keyasint,omitempty"` // the message of a declared sentinel it matches
}

// PanicInfo is a panic in a task function, as it crosses the wire.
type PanicInfo struct {
	Value string `cbor:"1,keyasint"`
	Stack []byte `cbor:"2,keyasint"`
}
