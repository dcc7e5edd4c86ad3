package bench_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/go-mp/mp/internal/rawio"
)

// The machine's floor for a round trip between two processes: a Go
// process writes 64 bytes to a Unix socketpair and another Go process
// (this test binary, started as an echo server) writes them back, both
// with the same system calls as mp's own connections (internal/rawio). No
// framing, no codec, no scheduling beyond Go's own: what no pool of
// processes can beat. run.sh prints it beside Apply.

const echoEnv = "MP_BENCH_ECHO"

// echoServer is what this binary does when started with echoEnv set:
// echo 64-byte messages on fd 3 until EOF.
func echoServer() {
	runtime.GOMAXPROCS(1) // as mp's workers run by default
	f, err := rawConn(os.NewFile(3, "echo"))
	if err != nil {
		os.Exit(1)
	}
	buf := make([]byte, 64)
	for {
		if _, err := io.ReadFull(f, buf); err != nil {
			os.Exit(0)
		}
		if _, err := f.Write(buf); err != nil {
			os.Exit(0)
		}
	}
}

// maybeEcho runs the echo server, from TestMain, if this process was
// started as one. Not from an init function: during init the main goroutine
// is locked to its thread, and each wake-up would then cost a second thread.
func maybeEcho() {
	if os.Getenv(echoEnv) == "1" {
		echoServer()
	}
}

// rawConn returns f, a Unix socket, read and written as mp's connections
// are. It closes f.
func rawConn(f *os.File) (*rawio.Conn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s is not a Unix socket", f.Name())
	}
	return rawio.New(uc), nil
}

// startEcho starts the echo server and returns this side of its socket.
func startEcho(tb testing.TB) *rawio.Conn {
	tb.Helper()
	oursF, theirs, err := socketPair()
	if err != nil {
		tb.Skip(err)
	}
	ours, err := rawConn(oursF)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), echoEnv+"=1")
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	theirs.Close()
	tb.Cleanup(func() { ours.Close(); cmd.Wait() })
	return ours
}

func roundTrip(f *rawio.Conn, buf []byte) error {
	if _, err := f.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(f, buf)
	return err
}

// BenchmarkFloor is one 64-byte round trip to another process and back.
func BenchmarkFloor(b *testing.B) {
	f := startEcho(b)
	buf := make([]byte, 64)
	if err := roundTrip(f, buf); err != nil { // warm up
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := roundTrip(f, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFloorEchoes(t *testing.T) {
	f := startEcho(t)
	buf := []byte("0123456789012345678901234567890123456789012345678901234567890123")
	want := string(buf)
	if err := roundTrip(f, buf); err != nil || string(buf) != want {
		t.Errorf("echo: got %q, %v", buf, err)
	}
}
