// Package wire is the protocol between an mp parent and its worker processes:
// length-prefixed frames, the CBOR codec, the task and result bodies, and the
// versioned handshake. Everything a peer sends is checked against limits
// before anything is allocated for it.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Kind says what a frame carries.
type Kind uint8

// The frame kinds. Values are part of the protocol: append, never renumber.
const (
	KindHello    Kind = 1  // both ways, first frame: a [Hello]
	KindTask     Kind = 2  // parent to worker: a [Task] body
	KindResult   Kind = 3  // worker to parent: a [Result] body
	KindCancel   Kind = 4  // parent to worker: cancel task ID (running) or revoke it (queued)
	KindRevoked  Kind = 5  // worker to parent: task ID was revoked before it started
	KindRevoke   Kind = 6  // parent to worker: revoke task ID if it has not started
	KindOverrun  Kind = 7  // worker to parent: item (u32 payload) of task ID overran its timeout; the worker exits
	KindProgress Kind = 8  // worker to parent: the first n (u32 payload) items of running chunk ID are done
	KindFDs      Kind = 9  // parent to worker: descriptors for the handles (u64 IDs in the payload), as SCM_RIGHTS
	KindForget   Kind = 10 // parent to worker: the handles (u64 IDs) are closed: drop them
)

func (k Kind) String() string {
	switch k {
	case KindHello:
		return "hello"
	case KindTask:
		return "task"
	case KindResult:
		return "result"
	case KindCancel:
		return "cancel"
	case KindRevoked:
		return "revoked"
	case KindRevoke:
		return "revoke"
	case KindOverrun:
		return "overrun"
	case KindProgress:
		return "progress"
	case KindFDs:
		return "fds"
	case KindForget:
		return "forget"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// HeaderSize is the size of a frame header: a 4-byte big-endian length of
// what follows it, a 1-byte kind and an 8-byte big-endian ID.
const HeaderSize = 4 + 1 + 8

// DefaultMaxFrame is the frame size limit used when none is configured.
const DefaultMaxFrame = 64 << 20

// MaxFrameLimit is the largest limit a Reader or Writer accepts: a frame's
// length must fit its 32-bit field, and an int on every platform. Larger
// configured limits are lowered to it.
const MaxFrameLimit = 1<<31 - 1 - HeaderSize

func limit(max int) int {
	if max <= 0 {
		return DefaultMaxFrame
	}
	return min(max, MaxFrameLimit)
}

// Frame is one message on a worker connection.
type Frame struct {
	Kind    Kind
	ID      uint64
	Payload []byte
}

// FrameTooLargeError reports a frame whose size is over the limit. It is
// returned both for a frame about to be sent and for a header received.
type FrameTooLargeError struct {
	Size  int64 // the frame's payload size in bytes
	Limit int   // the limit in force
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("mp: message of %d bytes is over the %d-byte limit (raise WorkerOptions.MaxMessageSize, or send less per call)", e.Size, e.Limit)
}

// ErrMalformed is wrapped by every error about bytes that do not follow the protocol.
var ErrMalformed = errors.New("mp: malformed message")

// Reader reads frames from a connection.
type Reader struct {
	r   *bufio.Reader
	max int
	hdr [HeaderSize]byte
}

// NewReader returns a Reader that refuses frames whose payload is over max bytes
// (DefaultMaxFrame if max <= 0).
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: limit(max)}
}

// Buffered returns how many bytes have been received and not yet read as
// frames: zero means the next Read waits for the peer.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// SetMax changes the payload size limit, as agreed in a handshake.
func (r *Reader) SetMax(max int) {
	if max > 0 {
		r.max = limit(max)
	}
}

// Read returns the next frame. It returns io.EOF only at a clean frame
// boundary; a connection cut inside a frame is io.ErrUnexpectedEOF. A header
// that claims more than the limit is a *FrameTooLargeError, and nothing of
// that size is allocated.
func (r *Reader) Read() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Frame{}, err
	}
	return r.readBody(r.hdr[:])
}

func (r *Reader) readBody(hdr []byte) (Frame, error) {
	n := int64(binary.BigEndian.Uint32(hdr[0:4]))
	f := Frame{Kind: Kind(hdr[4]), ID: binary.BigEndian.Uint64(hdr[5:13])}
	if n < HeaderSize-4 {
		return Frame{}, fmt.Errorf("%w: frame length %d is shorter than its header", ErrMalformed, n)
	}
	size := n - (HeaderSize - 4)
	if size > int64(r.max) {
		return Frame{}, &FrameTooLargeError{Size: size, Limit: r.max}
	}
	f.Payload = make([]byte, size)
	if _, err := io.ReadFull(r.r, f.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}

// vectorWriter is a connection that writes several buffers at once, as
// net.Buffers does for the net package's own connections.
type vectorWriter interface {
	Writev(bufs [][]byte) (int64, error)
}

// Writer writes frames to a connection. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	max     int
	pending []pendingFrame // added and not yet flushed
	buf     net.Buffers
	out     net.Buffers
}

// pendingFrame is a frame added to a Writer: its header, and its payload
// in parts, which the Writer does not copy.
type pendingFrame struct {
	hdr   [HeaderSize]byte
	parts [][]byte
}

// NewWriter returns a Writer that refuses payloads over max bytes
// (DefaultMaxFrame if max <= 0).
func NewWriter(w io.Writer, max int) *Writer {
	return &Writer{w: w, max: limit(max)}
}

// SetMax changes the payload size limit, as agreed in a handshake.
func (w *Writer) SetMax(max int) {
	if max > 0 {
		w.max = limit(max)
	}
}

// Max returns the payload size limit.
func (w *Writer) Max() int { return w.max }

// Write sends one frame whose payload is the concatenation of parts. Header
// and parts go out in one vectored write, so a large payload is never copied.
func (w *Writer) Write(kind Kind, id uint64, parts ...[]byte) error {
	if err := w.Add(kind, id, parts...); err != nil {
		return err
	}
	return w.Flush()
}

// Add queues a frame, to be sent by the next Flush: several frames then go
// out in one vectored write. The parts must not change until then.
func (w *Writer) Add(kind Kind, id uint64, parts ...[]byte) error {
	return w.add(kind, id, parts)
}

// Add2 is Add of a payload in two parts, without a slice to hold them.
func (w *Writer) Add2(kind Kind, id uint64, head, body []byte) error {
	return w.add2(kind, id, head, body)
}

func (w *Writer) add2(kind Kind, id uint64, head, body []byte) error {
	if err := w.add(kind, id, nil); err != nil {
		return err
	}
	f := &w.pending[len(w.pending)-1]
	size := len(head) + len(body)
	if size > w.max {
		w.pending = w.pending[:len(w.pending)-1]
		return &FrameTooLargeError{Size: int64(size), Limit: w.max}
	}
	binary.BigEndian.PutUint32(f.hdr[0:4], uint32(size+HeaderSize-4))
	f.parts = append(f.parts, head, body)
	return nil
}

func (w *Writer) add(kind Kind, id uint64, parts [][]byte) error {
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	if size > w.max {
		return &FrameTooLargeError{Size: int64(size), Limit: w.max}
	}
	if len(w.pending) < cap(w.pending) {
		w.pending = w.pending[:len(w.pending)+1] // reuse its parts' capacity
	} else {
		w.pending = append(w.pending, pendingFrame{})
	}
	f := &w.pending[len(w.pending)-1]
	binary.BigEndian.PutUint32(f.hdr[0:4], uint32(size+HeaderSize-4))
	f.hdr[4] = byte(kind)
	binary.BigEndian.PutUint64(f.hdr[5:13], id)
	f.parts = append(f.parts[:0], parts...)
	return nil
}

// Flush sends the frames added since the last Flush, in one vectored write.
func (w *Writer) Flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	w.buf = w.buf[:0]
	for i := range w.pending {
		f := &w.pending[i]
		w.buf = append(w.buf, f.hdr[:])
		for _, p := range f.parts {
			if len(p) > 0 {
				w.buf = append(w.buf, p)
			}
		}
	}
	var err error
	if vw, ok := w.w.(vectorWriter); ok {
		_, err = vw.Writev(w.buf)
	} else {
		w.out = w.buf // WriteTo consumes what it is called on
		_, err = w.out.WriteTo(w.w)
	}
	clear(w.buf[:cap(w.buf)])
	for i := range w.pending {
		clear(w.pending[i].parts)
		w.pending[i].parts = w.pending[i].parts[:0]
	}
	w.pending = w.pending[:0]
	return err
}
