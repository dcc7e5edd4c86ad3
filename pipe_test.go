package mp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type pipeJob struct {
	C    *mp.Conn[string]
	N    int
	Exit bool // exit without closing, after the echoes
}

// pipeEchoBack receives values and sends each back with "echo " before it,
// until io.EOF or N values; then it closes its end, or exits.
var pipeEchoBack = mp.Register("test.pipe.echo-back", func(ctx context.Context, j pipeJob) (int, error) {
	n := 0
	for ; j.N == 0 || n < j.N; n++ {
		v, err := j.C.Recv(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		if err := j.C.Send(ctx, "echo "+v); err != nil {
			return n, err
		}
	}
	if j.Exit {
		os.Exit(0)
	}
	return n, j.C.Close()
})

func TestPipe(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	a, b, err := mp.Pipe[string]()
	if err != nil {
		t.Fatal(err)
	}
	child := spawn(t, ctx, pipeEchoBack, pipeJob{C: b})
	b.Close()                           // the child holds it now
	big := strings.Repeat("x", 200<<10) // streams through the 64 KiB ring
	for _, v := range []string{"one", big, "three"} {
		if err := a.Send(ctx, v); err != nil {
			t.Fatal(err)
		}
		got, err := a.Recv(ctx)
		if err != nil || got != "echo "+v {
			t.Fatalf("Recv: got %.20q, %v; want the echo of %.20q", got, err, v)
		}
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if ok, err := a.Poll(short); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Poll with nothing sent: got %v, %v; want false, context.DeadlineExceeded", ok, err)
	}
	a.Close()
	if n, err := child.Wait(ctx); n != 3 || err != nil {
		t.Errorf("the child echoed %d values, then %v; want 3, then EOF", n, err)
	}
	if err := a.Send(ctx, "late"); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Send on a closed end: got %v", err)
	}
	if _, err := a.Recv(ctx); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Recv on a closed end: got %v", err)
	}
}

func TestPipePeerDied(t *testing.T) {
	// Recv on an end whose peer's process died returns what it sent, then
	// io.EOF; Send to it fails.
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	a, b, err := mp.Pipe[string]()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	child := spawn(t, ctx, pipeEchoBack, pipeJob{C: b, N: 1, Exit: true})
	b.Close()
	a.Send(ctx, "last")
	child.Wait(ctx)
	if v, err := a.Recv(ctx); v != "echo last" || err != nil {
		t.Fatalf("Recv of what the dead peer sent: %q, %v", v, err)
	}
	start := time.Now()
	if _, err := a.Recv(ctx); err != io.EOF {
		t.Errorf("Recv from a dead peer: got %v, want io.EOF", err)
	}
	t.Logf("io.EOF after %v", time.Since(start))
	if ok, err := a.Poll(ctx); !ok || err != nil {
		t.Errorf("Poll with EOF pending: %v, %v", ok, err)
	}
	if err := a.Send(ctx, "to no one"); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Send to a dead peer: got %v", err)
	}
}

func TestPipeBadInput(t *testing.T) {
	t.Parallel()
	a, b, err := mp.Pipe[any]()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send(t.Context(), func() {}); err == nil || !strings.Contains(err.Error(), "cannot encode") {
		t.Errorf("Send of a func: got %v", err)
	}
	if err := a.Send(t.Context(), make([]byte, 80<<20)); !errors.Is(err, mp.ErrMessageTooLarge) {
		t.Errorf("Send over the limit: got %v", err)
	}
	// The bound starts here: on a loaded machine, the 80 MiB above can take
	// seconds to make and encode.
	ctx := bounded(t, 30*time.Second)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := b.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Recv with nothing sent, past the deadline: got %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Recv(ctx)
		done <- err
	}()
	time.Sleep(5 * time.Millisecond) // likely waiting by now; either way it must end
	b.Close()
	if err := <-done; !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Recv when its end is closed meanwhile: got %v", err)
	}
	if _, err := a.Recv(ctx); err != io.EOF {
		t.Errorf("Recv after the peer closed: got %v, want io.EOF", err)
	}
}

// listenEcho dials the listener at address with key, sends "hello", and
// returns what comes back.
var listenEcho = mp.Register("test.listen.echo", func(ctx context.Context, a [2]string) (string, error) {
	c, err := mp.Dial[string](ctx, "unix", a[0], []byte(a[1]), mp.DialOptions{})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Send(ctx, "hello"); err != nil {
		return "", err
	}
	return c.Recv(ctx)
})

func TestListener(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	key := []byte("0123456789abcdef")
	addr := filepath.Join(t.TempDir(), "sock")
	l, err := mp.Listen[string]("unix", addr, key, mp.ListenOptions{HandshakeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// A silent client and one that sends garbage come first: neither holds
	// up the good client after them.
	silent, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	garbage.Write([]byte(strings.Repeat("garbage!", 8)))

	if _, err := mp.Dial[string](ctx, "unix", addr, []byte("the wrong key, of 32 bytes at it"), mp.DialOptions{}); !errors.Is(err, mp.ErrAuth) {
		t.Errorf("Dial with a wrong key: got %v, want ErrAuth", err)
	}
	child := spawn(t, ctx, listenEcho, [2]string{addr, string(key)})
	c, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Recv(ctx); v != "hello" || err != nil {
		t.Fatalf("Recv from the client: %q, %v", v, err)
	}
	if err := c.Send(ctx, "hi back"); err != nil {
		t.Fatal(err)
	}
	if v, err := child.Wait(ctx); v != "hi back" || err != nil {
		t.Errorf("the client got %q, %v", v, err)
	}
	if _, err := c.Recv(ctx); err != io.EOF {
		t.Errorf("Recv after the client closed: got %v, want io.EOF", err)
	}
	c.Close()
	if err := c.Send(ctx, "x"); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Send on a closed Conn: got %v", err)
	}

	// The garbage client was dropped at once, and told nothing; the silent
	// one is dropped after HandshakeTimeout.
	for _, nc := range []net.Conn{garbage, silent} {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(nc)
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil // closed with the garbage unread
		}
		if err != nil || len(b) != 0 {
			t.Errorf("a bad client was not dropped: got %q, %v", b, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.Accept(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Accept with no client: got %v", err)
	}
	l.Close()
	if _, err := l.Accept(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: got %v", err)
	}
	if _, err := os.Stat(addr); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket file is left after Close: %v", err)
	}
	if _, err := mp.Listen[string]("unix", addr, nil, mp.ListenOptions{}); err == nil {
		t.Error("a listener with no key was made")
	}
	if _, err := mp.Spawn(ctx, connPass, pipeJob{C: c}, mp.WorkerOptions{}); err == nil || !strings.Contains(err.Error(), "cannot be passed") {
		t.Errorf("passing a socket Conn: got %v", err)
	}
}

var connPass = mp.Register("test.conn.pass", func(ctx context.Context, j pipeJob) (int, error) { return 0, nil })
