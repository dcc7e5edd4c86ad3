package wire

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Task is the body of a KindTask frame: a function name, an optional
// deadline and a batch of encoded arguments, run one after another.
type Task struct {
	Func     string
	Deadline time.Time // zero: none
	Items    [][]byte
}

// AppendTask appends the encoding of t to dst:
//
//	u16 name length, name, i64 deadline (Unix ns, 0 for none),
//	u32 item count, then per item: u32 length, bytes.
//
// Item bytes are copied; callers sending large arguments should use
// [TaskHeader] and pass the items as separate parts to [Writer.Write].
func AppendTask(dst []byte, t Task) []byte {
	dst = AppendTaskHeader(dst, t.Func, t.Deadline, len(t.Items))
	for _, it := range t.Items {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(it)))
		dst = append(dst, it...)
	}
	return dst
}

// AppendTaskHeader appends everything of a task body up to its first item.
func AppendTaskHeader(dst []byte, fn string, deadline time.Time, n int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(fn)))
	dst = append(dst, fn...)
	var d int64
	if !deadline.IsZero() {
		d = deadline.UnixNano()
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(d))
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// ParseTask decodes a task body. Items alias b.
func ParseTask(b []byte) (Task, error) {
	var t Task
	p := parser{b: b}
	t.Func = string(p.bytes(int(p.u16())))
	if d := int64(p.u64()); d != 0 {
		t.Deadline = time.Unix(0, d)
	}
	n := p.count()
	t.Items = make([][]byte, 0, n)
	for range n {
		t.Items = append(t.Items, p.bytes(int(p.u32())))
	}
	return t, p.done("task")
}

// Status is the outcome of one item of a task.
type Status uint8

// The item outcomes.
const (
	StatusOK    Status = 0 // Data is the encoded result
	StatusError Status = 1 // Data is an encoded [ErrorInfo]
	StatusPanic Status = 2 // Data is an encoded [PanicInfo]
)

// Item is the outcome of one item of a task.
type Item struct {
	Status Status
	Data   []byte
}

// Result is the body of a KindResult frame.
type Result struct {
	Items []Item
	RSS   uint64 // the worker's resident set size after the task, if asked for
}

// ErrorInfo is an error returned by a task function, as it crosses the wire.
type ErrorInfo struct {
	Type     string `cbor:"1,keyasint"`
	Msg      string `cbor:"2,keyasint"`
	Sentinel string `cbor:"3,keyasint,omitempty"` // the key of a registered sentinel it matches
}

// PanicInfo is a panic in a task function, as it crosses the wire.
type PanicInfo struct {
	Value string `cbor:"1,keyasint"`
	Stack []byte `cbor:"2,keyasint"`
}

// AppendResult appends the encoding of r to dst:
//
//	u64 rss, u32 item count, then per item: u8 status, u32 length, bytes.
func AppendResult(dst []byte, r Result) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.RSS)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Items)))
	for _, it := range r.Items {
		dst = append(dst, byte(it.Status))
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(it.Data)))
		dst = append(dst, it.Data...)
	}
	return dst
}

// ParseResult decodes a result body. Item data alias b.
func ParseResult(b []byte) (Result, error) {
	var r Result
	p := parser{b: b}
	r.RSS = p.u64()
	n := p.count()
	r.Items = make([]Item, 0, n)
	for range n {
		st := Status(p.u8())
		if st > StatusPanic && p.err == nil {
			p.err = fmt.Errorf("%w: unknown item status %d", ErrMalformed, st)
		}
		r.Items = append(r.Items, Item{Status: st, Data: p.bytes(int(p.u32()))})
	}
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

func (p *parser) bytes(n int) []byte { return p.take(n) }

// count reads an item count and checks it against the bytes left, at least
// four per item, so a forged count cannot make the decoder allocate.
func (p *parser) count() int {
	n := int(p.u32())
	if p.err == nil && n > len(p.b)/4 {
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

// AppendUint32 appends n as a big-endian uint32, as item lengths are sent.
func AppendUint32(dst []byte, n int) []byte { return binary.BigEndian.AppendUint32(dst, uint32(n)) }
