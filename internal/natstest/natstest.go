// Package natstest holds what tests share to run calls on worker hosts
// through NATS: an embedded server, and worker host processes, which are
// the test binary itself, started again with the server's address in
// their environment.
package natstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/natspool"
)

// The environment of a worker host.
const (
	hostEnv = "MP_NATSTEST_HOST" // the server's URL
	seedEnv = "MP_NATSTEST_SEED" // the nkey seed file of a host, if it uses one
)

// AckWait is the pools' and hosts' AckWait: short, so that a lost host's
// tasks come back quickly.
const AckWait = 2 * time.Second

// Main is TestMain's body, in place of mp.Main and m.Run: in a worker host
// started by StartHost it runs tasks until SIGTERM, then exits; in a
// worker it serves tasks; in the test process it runs the tests.
func Main(m *testing.M) {
	mp.Main()
	if url := os.Getenv(hostEnv); url != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		err := natspool.RunWorker(ctx, natspool.WorkerOptions{
			Options: natspool.Options{URL: url, AckWait: AckWait, NKeySeedFile: os.Getenv(seedEnv)},
			Pool:    mp.PoolOptions{Workers: 2},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker host:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// StartServer starts an embedded server (head mode) for the test.
func StartServer(t testing.TB) *natspool.Server {
	t.Helper()
	s, err := natspool.StartServer(natspool.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// StartNkeyHost starts a worker host that authenticates with the server's
// worker nkey.
func StartNkeyHost(t testing.TB, s *natspool.Server) *Host {
	t.Helper()
	seed := filepath.Join(t.TempDir(), "worker.nk")
	if err := s.WriteWorkerSeed(seed); err != nil {
		t.Fatal(err)
	}
	return StartHost(t, s.Addr(), seedEnv+"="+seed)
}

// A Host is a worker host process.
type Host struct {
	*exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // how it exited, once done is closed
}

// Exited waits at most d for the host to exit, and returns how it did;
// ok is false if it is still running.
func (h *Host) Exited(d time.Duration) (err error, ok bool) {
	select {
	case <-h.done:
		return h.err, true
	case <-time.After(d):
		return nil, false
	}
}

// StartHost starts a worker host process dialling url, with env added to
// its environment; the test's end stops it with SIGTERM (a kill, if it
// has not exited within 10s). The test binary's TestMain must call Main.
func StartHost(t testing.TB, url string, env ...string) *Host {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), hostEnv+"="+url), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &Host{Cmd: cmd, done: make(chan struct{})}
	go func() {
		h.err = cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		resume(cmd.Process) // if a test stopped it
		cmd.Process.Signal(syscall.SIGTERM)
		if _, ok := h.Exited(10 * time.Second); !ok {
			cmd.Process.Kill()
			<-h.done
			t.Error("a worker host did not stop within 10s of SIGTERM")
		}
	})
	return h
}

// NewPool returns a pool on the server at opts.URL, with AckWait, closed
// at the test's end.
func NewPool(t testing.TB, ctx context.Context, opts natspool.Options) *mp.Pool {
	t.Helper()
	return newPool(t, ctx, opts, mp.PoolOptions{})
}

func newPool(t testing.TB, ctx context.Context, opts natspool.Options, popts mp.PoolOptions) *mp.Pool {
	t.Helper()
	opts.AckWait = AckWait
	p, err := natspool.NewPool(ctx, opts, popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Cluster starts a server and two worker hosts (with the nkey), and
// returns a pool on them with the options popts (natspool.NewPool), all
// stopped at the test's end.
func Cluster(t testing.TB, ctx context.Context, popts mp.PoolOptions) *mp.Pool {
	t.Helper()
	s := StartServer(t)
	StartNkeyHost(t, s)
	StartNkeyHost(t, s)
	return newPool(t, ctx, natspool.Options{URL: s.URL()}, popts)
}
