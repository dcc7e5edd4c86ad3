//go:build linux

package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a Unix socketpair, each read and written raw.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return New(c.(*net.UnixConn))
	}
	return conn(fds[0]), conn(fds[1])
}

func TestRoundTrip(t *testing.T) {
	a, b := pair(t)
	for i := range 100 {
		msg := []byte{byte(i), 1, 2, 3}
		if n, err := a.Write(msg); err != nil || n != len(msg) {
			t.Fatalf("write: %d, %v", n, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("read: %v, %v; want %v", got, err, msg)
		}
	}
}

// TestWritevLarge writes more buffers than one writev takes, and more bytes
// than the socket holds, so that the write waits for the reader and goes on
// from the middle of a buffer.
func TestWritevLarge(t *testing.T) {
	a, b := pair(t)
	var bufs [][]byte
	var want []byte
	for i := range 3000 {
		buf := bytes.Repeat([]byte{byte(i)}, i%7*1000) // some empty
		bufs = append(bufs, buf)
		want = append(want, buf...)
	}
	got := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(io.LimitReader(b, int64(len(want))))
		got <- data
	}()
	n, err := a.Writev(bufs)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("writev: %d, %v; want %d", n, err, len(want))
	}
	select {
	case data := <-got:
		if !bytes.Equal(data, want) {
			t.Fatalf("read %d bytes, not the %d written", len(data), len(want))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reader did not get all the bytes")
	}
}

func TestEndAndErrors(t *testing.T) {
	a, b := pair(t)
	b.Close()
	if _, err := a.Read(make([]byte, 8)); err != io.EOF {
		t.Errorf("read after the peer closed: got %v, want io.EOF", err)
	}
	var err error
	for range 10 { // the first write may land in the buffer
		if _, err = a.Write([]byte("x")); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write after the peer closed: got %v, want EPIPE", err)
	}
	if _, err := b.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read of a closed conn: got %v, want net.ErrClosed", err)
	}
}

func TestDeadline(t *testing.T) {
	a, _ := pair(t)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := a.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("got %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestCloseWakesReader closes a conn while a read waits on it.
func TestCloseWakesReader(t *testing.T) {
	a, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it wait; either way it must end
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("got %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not end when its conn closed")
	}
}

func TestReadMsgUnixDescriptors(t *testing.T) {
	a, b := pair(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := a.WriteMsgUnix([]byte("fd"), syscall.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 8), make([]byte, syscall.CmsgSpace(4))
	n, oobn, flags, _, err := b.ReadMsgUnix(buf, oob)
	if err != nil || string(buf[:n]) != "fd" || flags&syscall.MSG_CTRUNC != 0 {
		t.Fatalf("got %q, flags %#x, %v", buf[:n], flags, err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %v, %v", msgs, err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v, %v", fds, err)
	}
	defer syscall.Close(fds[0])
	var st1, st2 syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &st1)
	syscall.Fstat(fds[0], &st2)
	if st1.Ino != st2.Ino || st1.Dev != st2.Dev {
		t.Error("the descriptor received is not the one sent")
	}
}

// TestKeeperStops checks that the timer that bounds the system monitor's
// sleep stops once messages stop: an idle process must not wake up every
// KeepAwake.
func TestKeeperStops(t *testing.T) {
	a, b := pair(t)
	a.Write([]byte("x"))
	b.Read(make([]byte, 1))
	if s := keeper.state.Load(); s == cold {
		t.Fatal("the keeper is cold right after a message")
	}
	deadline := time.Now().Add(10 * time.Second)
	for keeper.state.Load() != cold {
		if time.Now().After(deadline) {
			t.Fatal("the keeper still runs 10s after the last message")
		}
		time.Sleep(KeepAwake)
	}
	a.Write([]byte("y"))
	if s := keeper.state.Load(); s != touched {
		t.Errorf("after a new message: state %d, want %d", s, touched)
	}
}

// TestPollingBacksOff checks that a read that finds nothing polls before it
// waits, that a connection whose pollings keep finding nothing stops
// polling but for a probe every probeEvery-th wait, and that a polling
// that finds data makes it poll again.
func TestPollingBacksOff(t *testing.T) {
	a, b := pair(t)
	buf := make([]byte, 1)
	timeout := func(i int) {
		t.Helper()
		a.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		if _, err := a.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read %d from a silent peer: got %v, want a timeout", i, err)
		}
	}
	for i := 1; i <= maxMisses; i++ {
		timeout(i)
		if a.misses != i || a.skipped != 0 {
			t.Fatalf("after %d timed-out reads: %d misses and %d skipped, want %d and 0", i, a.misses, a.skipped, i)
		}
	}
	probed := a.spinEnd
	for i := 1; i < probeEvery; i++ {
		timeout(maxMisses + i)
		if a.skipped != i || a.spinEnd != probed {
			t.Fatalf("read %d after %d misses in a row polled (skipped %d)", i, maxMisses, a.skipped)
		}
	}
	timeout(maxMisses + probeEvery)
	if a.spinEnd == probed || a.misses != maxMisses {
		t.Fatalf("read %d after %d misses in a row: no probe, or the probe's miss not counted (%d misses)", probeEvery, maxMisses, a.misses)
	}

	// A polling that finds data: the next wait polls again.
	a.SetReadDeadline(time.Time{})
	if _, err := b.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	a.rbuf, a.rmsg, a.rspin = buf, false, spinning
	if err := a.rc.Read(a.readFn); err != nil || a.rn != 1 {
		t.Fatalf("read while polling: %d bytes, %v", a.rn, err)
	}
	if a.misses != 0 {
		t.Errorf("a polling that found data left %d misses, want 0", a.misses)
	}
}

// TestSetPolling checks that a Conn whose polling is off waits at once,
// and polls again once it is back on.
func TestSetPolling(t *testing.T) {
	a, _ := pair(t)
	buf := make([]byte, 1)
	timeout := func() {
		t.Helper()
		a.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		if _, err := a.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read from a silent peer: got %v, want a timeout", err)
		}
	}
	a.SetPolling(false)
	for range maxMisses + probeEvery {
		timeout()
	}
	if !a.spinEnd.IsZero() || a.misses != 0 || a.skipped != 0 {
		t.Fatalf("with polling off, reads polled (misses %d, skipped %d)", a.misses, a.skipped)
	}
	a.SetPolling(true)
	timeout()
	if a.spinEnd.IsZero() || a.misses != 1 {
		t.Fatalf("with polling back on, a read did not poll (misses %d)", a.misses)
	}
}

// TestFile checks a pipe read and written raw: what is written arrives, in
// order; the writer's close is EOF; and a read after Close fails with
// net.ErrClosed, as a socket's does.
func TestFile(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	rc, wc := NewFile(r), NewFile(w)
	defer rc.Close()
	if _, err := wc.Writev([][]byte{[]byte("hello, "), nil, []byte("pipe")}); err != nil {
		t.Fatalf("Writev: %v", err)
	}
	wc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != "hello, pipe" {
		t.Fatalf("read %q, %v; want %q, nil", got, err, "hello, pipe")
	}

	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	rc2 := NewFile(r2)
	done := make(chan error, 1)
	go func() {
		_, err := rc2.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the read start waiting; it fails either way
	rc2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("a read of a closed pipe: got %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a read in progress")
	}
}
