package session

import (
	"bytes"
	"io"
	"testing"
)

// FuzzHandshake feeds arbitrary bytes to both sides of the handshake, as
// what the other side sends: never a panic, never a success (no input
// can prove the key for nonces it did not see).
func FuzzHandshake(f *testing.F) {
	f.Add([]byte(magic + string(make([]byte, nonceSize+sha256Size))))
	f.Add([]byte(magic + string(make([]byte, nonceSize+sha256Size+1))))
	f.Add([]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		if c, err := Server(rw{bytes.NewReader(in), io.Discard}, testKey, 1<<20); err == nil || c != nil {
			t.Fatalf("the server accepted %q", in)
		}
		if c, err := Client(rw{bytes.NewReader(in), io.Discard}, testKey, 1<<20); err == nil || c != nil {
			t.Fatalf("the client accepted %q", in)
		}
	})
}

const sha256Size = 32

// FuzzReadSealed feeds arbitrary bytes to the frame reader of a
// connection: never a panic; a message only from a frame sealed for it,
// in order; nothing read after a failure.
func FuzzReadSealed(f *testing.F) {
	msgs := [][]byte{[]byte("first"), {}, bytes.Repeat([]byte("y"), 70<<10)}
	frames, reader := sealed(msgs...)
	f.Add(frames)
	f.Add(frames[:30])
	f.Add([]byte("\x00\x10\x00\x10abc"))
	f.Add([]byte("\x00\x00\x00\x05hello"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := reader(in)
		for i := 0; ; i++ {
			m, err := c.Read()
			if err != nil {
				if _, again := c.Read(); c.Broken() && again == nil {
					t.Fatal("a read after a failure succeeded")
				}
				return
			}
			if i >= len(msgs) || !bytes.Equal(m, msgs[i]) {
				t.Fatalf("message %d: %.20q, not what was sealed", i, m)
			}
		}
	})
}
