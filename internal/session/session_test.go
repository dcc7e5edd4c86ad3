package session

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// pair runs a handshake over a net.Pipe, the client with ckey and the
// server with skey.
func pair(t *testing.T, ckey, skey []byte) (client, server *Conn, cerr, serr error) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	done := make(chan struct{})
	go func() {
		defer close(done)
		server, serr = Server(b, skey, 1<<20)
		if serr != nil {
			b.Close()
		}
	}()
	client, cerr = Client(a, ckey, 1<<20)
	if cerr != nil {
		a.Close()
	}
	<-done
	return
}

func TestHandshakeAndFrames(t *testing.T) {
	c, s, cerr, serr := pair(t, testKey, testKey)
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	for _, m := range [][]byte{[]byte("one"), {}, bytes.Repeat([]byte("x"), 200<<10)} {
		go c.Write(m)
		got, err := s.Read()
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("got %.20q, %v; want %.20q", got, err, m)
		}
	}
}

func TestHandshakeWrongKey(t *testing.T) {
	other := bytes.Repeat([]byte("k"), 32)
	_, _, cerr, serr := pair(t, other, testKey)
	if !errors.Is(cerr, ErrAuth) || !errors.Is(serr, ErrAuth) {
		t.Errorf("client %v, server %v; want both ErrAuth", cerr, serr)
	}
}

func TestCheckKey(t *testing.T) {
	if err := CheckKey(make([]byte, 15)); err == nil {
		t.Error("a 15-byte key was accepted")
	}
	if err := CheckKey(make([]byte, 16)); err != nil {
		t.Errorf("a 16-byte key: %v", err)
	}
}

// rw is a connection that reads from r and writes to w.
type rw struct {
	io.Reader
	io.Writer
}

// sealed returns frames as the client would send them to a server whose
// handshake had nonces of zeros, and the server's Conn to read them.
func sealed(msgs ...[]byte) ([]byte, func(in []byte) *Conn) {
	s, err := derive(testKey, make([]byte, nonceSize), make([]byte, nonceSize))
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	w := newConn(rw{nil, &out}, s.clientSeal, s.serverSeal, 1<<20)
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			panic(err)
		}
	}
	return out.Bytes(), func(in []byte) *Conn {
		return newConn(rw{bytes.NewReader(in), io.Discard}, s.serverSeal, s.clientSeal, 1<<20)
	}
}

func TestTamperedFrames(t *testing.T) {
	frames, reader := sealed([]byte("first"), []byte("second"))
	one := 4 + len("first") + Overhead // where the second frame begins
	flip := bytes.Clone(frames)
	flip[6] ^= 1
	tests := []struct {
		name string
		in   []byte
		want []string // what Read returns before an error wrapping ErrAuth
	}{
		{"as sent", frames, []string{"first", "second", "EOF"}},
		{"a bit flipped", flip, nil},
		{"replayed", append(bytes.Clone(frames[:one]), frames[:one]...), []string{"first"}},
		{"reordered", append(bytes.Clone(frames[one:]), frames[:one]...), nil},
		{"the first dropped", frames[one:], nil},
		{"plain", []byte("\x00\x00\x00\x05hello"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := reader(tt.in)
			for _, w := range tt.want {
				got, err := c.Read()
				if w == "EOF" {
					if err != io.EOF {
						t.Fatalf("got %q, %v; want io.EOF", got, err)
					}
					return
				}
				if string(got) != w || err != nil {
					t.Fatalf("got %q, %v; want %q", got, err, w)
				}
			}
			if got, err := c.Read(); !errors.Is(err, ErrAuth) {
				t.Fatalf("got %q, %v; want ErrAuth", got, err)
			}
			if !c.Broken() {
				t.Error("not broken after a frame failed")
			}
		})
	}
}

func TestClaimWithoutBody(t *testing.T) {
	// A header that claims 1 MiB (the limit) and sends 10 bytes costs 64 KiB, not 1 MiB.
	_, reader := sealed()
	c := reader([]byte("\x00\x10\x00\x10" + "0123456789"))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := c.Read()
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<10 {
		t.Errorf("allocated %d bytes for a 10-byte body", grew)
	}
	c = reader([]byte("\x00\x20\x00\x00"))
	if _, err := c.Read(); !errors.As(err, new(*TooLargeError)) {
		t.Errorf("a frame over the limit: got %v", err)
	}
}
