package session

import (
	"bufio"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/go-mp/mp/internal/wire"
)

// Conn is the framing of an authenticated connection. Each message is a
// frame: a 4-byte big-endian length of what follows, then the message
// sealed with AES-256-GCM under this direction's key, with the frame's
// sequence number in this direction (0, 1, 2...) as its nonce and the
// length as additional data. A frame injected, altered, replayed,
// reordered or dropped fails to open, and so does every frame after it:
// the stream is broken for good.
//
// Write and Read may run at once, each in one goroutine at a time.
type Conn struct {
	r *bufio.Reader
	w io.Writer

	// Guarded by the caller's send lock.
	seal    cipher.AEAD
	sendSeq uint64
	sendBad bool // a Write failed part way: the peer has half a frame

	// Guarded by the caller's receive lock.
	open    cipher.AEAD
	recvSeq uint64
	recvBad error // why no more can be read
	hdr     [4]byte
	max     int
}

// Overhead is what sealing adds to a message: the GCM tag.
const Overhead = 16

func newConn(rw io.ReadWriter, seal, open cipher.AEAD, maxMsg int) *Conn {
	return &Conn{r: bufio.NewReader(rw), w: rw, seal: seal, open: open, max: maxMsg}
}

// TooLargeError is the error of a message over the limit, to be sent or
// received.
type TooLargeError struct {
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("a message of %d bytes, over the limit of %d", e.Size, e.Limit)
}

func nonce(seq uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n[:]
}

// errBroken is the error of a Write after one failed part way.
var errBroken = errors.New("an earlier send failed part way: the connection cannot carry more")

// Write seals b and sends it as one frame, in one write.
func (c *Conn) Write(b []byte) error {
	if c.sendBad {
		return errBroken
	}
	if len(b) > c.max {
		return &TooLargeError{Size: int64(len(b)), Limit: int64(c.max)}
	}
	frame := make([]byte, 4, 4+len(b)+Overhead)
	binary.BigEndian.PutUint32(frame, uint32(len(b)+Overhead))
	frame = c.seal.Seal(frame, nonce(c.sendSeq), b, frame[:4])
	c.sendSeq++
	if k, err := c.w.Write(frame); err != nil {
		if k > 0 {
			c.sendBad = true
		}
		return err
	}
	return nil
}

// Read returns the next message. At a frame boundary, it returns the
// reader's error as is (io.EOF if the peer closed); once a frame has
// begun, any error breaks the connection (see Broken): the rest of a
// frame cut short is io.ErrUnexpectedEOF, a frame that does not open
// wraps ErrAuth, and one over the limit is a *TooLargeError (its bytes
// are not read, nor anything allocated for them).
func (c *Conn) Read() ([]byte, error) {
	if c.recvBad != nil {
		return nil, c.recvBad
	}
	if k, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		if k > 0 {
			return nil, c.fail(io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(c.hdr[:]))
	if n < Overhead {
		return nil, c.fail(fmt.Errorf("%w: a frame of %d bytes, shorter than its seal: not from the peer", ErrAuth, n))
	}
	if n-Overhead > int64(c.max) {
		return nil, c.fail(&TooLargeError{Size: n - Overhead, Limit: int64(c.max)})
	}
	// The length is only a claim until the frame opens: grow as it arrives.
	b, err := wire.ReadGrowing(c.r, int(n))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, c.fail(err)
	}
	msg, err := c.open.Open(b[:0], nonce(c.recvSeq), b, c.hdr[:])
	if err != nil {
		return nil, c.fail(fmt.Errorf("%w: frame %d did not come from the peer as sent (injected, altered, replayed or out of order)", ErrAuth, c.recvSeq))
	}
	c.recvSeq++
	return msg, nil
}

func (c *Conn) fail(err error) error {
	c.recvBad = err
	return err
}

// Broken reports whether Read failed part way through a frame: no more
// can be read, and the connection should be closed.
func (c *Conn) Broken() bool { return c.recvBad != nil }

// Buffered reports whether bytes have arrived that Read has not taken.
func (c *Conn) Buffered() bool { return c.r.Buffered() > 0 }

// Wait waits for a byte to arrive (or the reader's error), without taking it.
func (c *Conn) Wait() error {
	_, err := c.r.Peek(1)
	return err
}

// SendBroken reports whether Write failed part way through a frame: no
// more can be sent, and the connection should be closed.
func (c *Conn) SendBroken() bool { return c.sendBad }
