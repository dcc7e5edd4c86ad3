package natspool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/natstest"
	"github.com/go-mp/mp/internal/seam"
	"github.com/go-mp/mp/natspool"
)

var (
	square = mp.Register("natspool.test.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	// troubled fails as x says: -1 an error, -2 a panic, -3 os.Exit(3).
	troubled = mp.Register("natspool.test.troubled", func(ctx context.Context, x int) (int, error) {
		switch x {
		case -1:
			return 0, errors.New("no good")
		case -2:
			panic("bad")
		case -3:
			os.Exit(3)
		}
		return x, nil
	})
	lockFn = mp.Register("natspool.test.lock", func(ctx context.Context, l *mp.Lock) (int, error) { return 0, nil })
	// nap sleeps a millisecond, and returns x and its worker's pid.
	nap = mp.Register("natspool.test.nap", func(ctx context.Context, x int) ([2]int, error) {
		time.Sleep(time.Millisecond)
		return [2]int{x, os.Getpid()}, nil
	})
	// attempt returns the task's attempt, and its ID.
	attempt = mp.Register("natspool.test.attempt", func(ctx context.Context, _ int) (mp.TaskInfo, error) {
		ti, _ := mp.TaskInfoFrom(ctx)
		return ti, nil
	})
	// slow writes its pid to the file at path, then takes two seconds; it
	// returns its pid and its attempt.
	slow = mp.Register("natspool.test.slow", func(ctx context.Context, path string) ([2]int, error) {
		if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			return [2]int{}, err
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return [2]int{}, ctx.Err()
		}
		ti, _ := mp.TaskInfoFrom(ctx)
		return [2]int{os.Getpid(), ti.Attempt}, nil
	})
	// snooze sleeps x milliseconds, or until its ctx ends.
	snooze = mp.Register("natspool.test.snooze", func(ctx context.Context, x int) (int, error) {
		select {
		case <-time.After(time.Duration(x) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return x, nil
	})
	// touch creates the file at path.
	touch = mp.Register("natspool.test.touch", func(ctx context.Context, path string) (int, error) {
		return 0, os.WriteFile(path, nil, 0o600)
	})
	// host returns the pid of the worker host that ran it (its worker's
	// parent).
	host = mp.Register("natspool.test.host", func(ctx context.Context, _ int) (int, error) { return os.Getppid(), nil })
)

// otherEnv is set for a worker host of another build.
const otherEnv = "NATSPOOL_TEST_OTHER"

func TestMain(m *testing.M) {
	if os.Getenv(otherEnv) != "" {
		// One more function makes another build of the same program.
		mp.Register("natspool.test.other", func(ctx context.Context, x int) (int, error) { return x, nil })
	}
	natstest.Main(m)
}

var (
	startServer   = natstest.StartServer
	startHost     = natstest.StartHost
	startNkeyHost = natstest.StartNkeyHost
	newPool       = natstest.NewPool
)

// waitStarted waits until slow, running for marker, has written it.
func waitStarted(t *testing.T, ctx context.Context, marker string) {
	t.Helper()
	waitFor(t, ctx, "the task to start", func() bool { _, err := os.Stat(marker); return err == nil })
}

// waitFor waits until cond holds, and fails the test if ctx ends first.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// admin connects to s with the pools' rights, until the test ends.
func admin(t *testing.T, s *natspool.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func bounded(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterCalls(t *testing.T) {
	ctx := bounded(t, 90*time.Second)
	s := startServer(t)
	startHost(t, s.WorkerURL())
	startHost(t, s.WorkerURL())
	p := newPool(t, ctx, natspool.Options{URL: s.URL()})

	in := make([]int, 300)
	for i := range in {
		in[i] = i
	}
	for _, chunk := range []int{1, 10} {
		got, err := mp.Map(ctx, p, square, in, mp.ChunkSize(chunk))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != i*i {
				t.Fatalf("chunk %d: item %d: got %d", chunk, i, v)
			}
		}
	}
	sum := 0
	for v, err := range mp.ImapUnordered(ctx, p, square, slices.Values(in), mp.ChunkSize(7)) {
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	if want := 299 * 300 * 599 / 6; sum != want {
		t.Errorf("ImapUnordered: sum %d, want %d", sum, want)
	}
	if v, err := mp.Apply(ctx, p, square, 9); v != 81 || err != nil {
		t.Errorf("Apply: %d, %v", v, err)
	}

	// A task's error, panic and crash on a host: the local pool's types.
	var re *mp.RemoteError
	if _, err := mp.Apply(ctx, p, troubled, -1); !errors.As(err, &re) || !strings.Contains(err.Error(), "no good") {
		t.Errorf("an error: got %v", err)
	}
	var pe *mp.PanicError
	if _, err := mp.Apply(ctx, p, troubled, -2); !errors.As(err, &pe) || pe.Value != "bad" {
		t.Errorf("a panic: got %v", err)
	}
	var ee *mp.ExitError
	if _, err := mp.Apply(ctx, p, troubled, -3); !errors.As(err, &ee) || ee.ExitCode() != 3 || ee.Host == "" {
		t.Errorf("a crash: got %v", err)
	}
	if v, err := mp.Apply(ctx, p, troubled, 5); v != 5 || err != nil {
		t.Errorf("after: %d, %v", v, err)
	}

	// A shared object of this machine cannot go to another.
	l, err := mp.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := mp.Apply(ctx, p, lockFn, l); err == nil || !strings.Contains(err.Error(), "cannot go to the workers") {
		t.Errorf("a Lock to a remote worker: got %v", err)
	}

	// 10,000 tasks, one item each.
	big := make([]int, 10_000)
	for i := range big {
		big[i] = i
	}
	start := time.Now()
	got, err := mp.Map(ctx, p, square, big, mp.ChunkSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i*i {
			t.Fatalf("item %d: got %d", i, v)
		}
	}
	t.Logf("a Map of 10,000 one-item tasks over 2 hosts: %v", time.Since(start))

	// Imap of 10,000, in order; 10,000 ApplyAsync at once.
	start = time.Now()
	i := 0
	for v, err := range mp.Imap(ctx, p, square, slices.Values(big)) {
		if err != nil || v != i*i {
			t.Fatalf("Imap item %d: %d, %v", i, v, err)
		}
		i++
	}
	if i != len(big) {
		t.Fatalf("Imap yielded %d items, want %d", i, len(big))
	}
	t.Logf("an Imap of 10,000: %v", time.Since(start))
	start = time.Now()
	futures := make([]*mp.Future[int], len(big))
	for i, x := range big {
		futures[i] = mp.ApplyAsync(ctx, p, square, x)
	}
	for i, f := range futures {
		if v, err := f.Wait(ctx); err != nil || v != i*i {
			t.Fatalf("ApplyAsync %d: %d, %v", i, v, err)
		}
	}
	t.Logf("10,000 ApplyAsync: %v", time.Since(start))
}

func TestClusterMapHostKilled(t *testing.T) {
	// A worker host SIGKILLed in the middle of a Map: the Map completes,
	// each result once and right.
	ctx := bounded(t, 120*time.Second)
	s := startServer(t)
	doomed := startHost(t, s.WorkerURL())
	startHost(t, s.WorkerURL())
	p := newPool(t, ctx, natspool.Options{URL: s.URL()})
	in := make([]int, 2000)
	for i := range in {
		in[i] = i
	}
	go func() {
		time.Sleep(500 * time.Millisecond) // the Map is under way
		doomed.Process.Kill()
	}()
	got, err := mp.Map(ctx, p, nap, in, mp.ChunkSize(5))
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]int{}
	for i, v := range got {
		if v[0] != i {
			t.Fatalf("item %d: got the result of %d", i, v[0])
		}
		pids[v[1]]++
	}
	t.Logf("results by worker: %v", pids)
}

func TestClusterHostDies(t *testing.T) {
	// A host killed in the middle of a task: the task goes to another host
	// after AckWait, and its outcome reaches the call once.
	ctx := bounded(t, 90*time.Second)
	s := startServer(t)
	doomed := startNkeyHost(t, s)
	p := newPool(t, ctx, natspool.Options{URL: s.URL()})
	marker := filepath.Join(t.TempDir(), "pid")
	f := mp.ApplyAsync(ctx, p, slow, marker)
	waitStarted(t, ctx, marker)
	first, _ := os.ReadFile(marker)
	doomed.Process.Kill()
	startNkeyHost(t, s)
	start := time.Now()
	got, err := f.Wait(ctx)
	if err != nil {
		t.Fatalf("the task after its host died: %v", err)
	}
	if strconv.Itoa(got[0]) == string(first) {
		t.Errorf("the result came from the worker that died (%d)", got[0])
	}
	if got[1] != 1 {
		t.Errorf("the task's Attempt on its second host: %d, want 1", got[1])
	}
	t.Logf("the task ran again on another host, done %v after the kill", time.Since(start))
	if st := p.Stats(); st.TasksDone != 1 {
		t.Errorf("%d tasks done, want 1", st.TasksDone)
	}
	if ti, err := mp.Apply(ctx, p, attempt, 0); err != nil || ti.ID == 0 || ti.Attempt != 0 {
		t.Errorf("a task's TaskInfo on a worker host: %+v, %v", ti, err)
	}
}

func TestClusterNoWorker(t *testing.T) {
	// No host serves the function: the call fails within bounds.
	ctx := bounded(t, 30*time.Second)
	s := startServer(t)
	p := newPool(t, ctx, natspool.Options{URL: s.URL(), NoWorkerTimeout: 500 * time.Millisecond})
	start := time.Now()
	_, err := mp.Apply(ctx, p, square, 2)
	if !errors.Is(err, natspool.ErrNoWorker) {
		t.Fatalf("got %v, want ErrNoWorker", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("it took %v", took)
	}
}

func TestServerNeedsTLSOffLoopback(t *testing.T) {
	if _, err := natspool.StartServer(natspool.ServerOptions{Host: "0.0.0.0"}); err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Errorf("got %v", err)
	}
}

func TestWorkerCredentials(t *testing.T) {
	// A worker host's credentials pull and acknowledge tasks, and no more;
	// a wrong password is refused.
	ctx := bounded(t, 30*time.Second)
	s := startServer(t)
	p := newPool(t, ctx, natspool.Options{URL: s.URL()}) // makes the stream
	_ = p
	wrong := strings.Replace(s.WorkerURL(), "worker:", "worker:x", 1)
	err := natspool.RunWorker(ctx, natspool.WorkerOptions{Options: natspool.Options{URL: wrong}})
	if err == nil || !strings.Contains(err.Error(), "uthorization") {
		t.Errorf("a worker host with a wrong password: got %v", err)
	}
	if pass := strings.TrimPrefix(strings.SplitN(wrong, "@", 2)[0], "nats://worker:"); strings.Contains(fmt.Sprint(err), pass) {
		t.Errorf("the error shows the password: %v", err)
	}
	// An nkey the server does not know is refused too.
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	os.WriteFile(stranger, seed, 0o600)
	err = natspool.RunWorker(ctx, natspool.WorkerOptions{Options: natspool.Options{URL: s.Addr(), NKeySeedFile: stranger}})
	if err == nil || !strings.Contains(err.Error(), "uthorization") {
		t.Errorf("a worker host with an unknown nkey: got %v", err)
	}

	nc, err := nats.Connect(s.WorkerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A refused publish gets no acknowledgement: each waits 2s at most.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := js.Publish(short, "mp.tasks.forged", []byte("x")); err == nil {
		t.Error("a worker's credentials published a task")
	}
	short, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := js.DeleteStream(short, "MP_TASKS"); err == nil {
		t.Error("a worker's credentials deleted the task stream")
	}
	short, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := js.Consumer(short, "MP_TASKS", "mp-workers-"+seam.Fingerprint()[:16]); err != nil {
		t.Errorf("a worker's credentials cannot see its consumer: %v", err)
	}
	admin, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	short, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := ajs.Stream(short, "MP_TASKS"); err != nil {
		t.Errorf("the stream is gone: %v", err)
	}
}

func TestClusterWorkersLost(t *testing.T) {
	// With no redelivery, a task whose host dies fails with ErrWorkersLost
	// once AckWait has passed.
	ctx := bounded(t, 60*time.Second)
	s := startServer(t)
	doomed := startHost(t, s.WorkerURL())
	p := newPool(t, ctx, natspool.Options{URL: s.URL(), Retries: -1})
	marker := filepath.Join(t.TempDir(), "pid")
	f := mp.ApplyAsync(ctx, p, slow, marker)
	waitStarted(t, ctx, marker)
	doomed.Process.Kill()
	start := time.Now()
	_, err := f.Wait(ctx)
	if !errors.Is(err, natspool.ErrWorkersLost) {
		t.Fatalf("got %v, want ErrWorkersLost", err)
	}
	t.Logf("failed %v after the kill: %v", time.Since(start), err)
}

func TestClusterOtherBuild(t *testing.T) {
	// A worker host of another build of the program (one more function
	// registered) is never handed this build's tasks, even when it is the
	// only one free; with no host of this build, a call fails with
	// ErrNoWorker.
	ctx := bounded(t, 60*time.Second)
	s := startServer(t)
	startHost(t, s.WorkerURL(), otherEnv+"=1")
	p := newPool(t, ctx, natspool.Options{URL: s.URL(), NoWorkerTimeout: time.Second})
	if _, err := mp.Apply(ctx, p, host, 0); !errors.Is(err, natspool.ErrNoWorker) {
		t.Fatalf("with a host of another build only: got %v, want ErrNoWorker", err)
	}
	same := startHost(t, s.WorkerURL())
	p = newPool(t, ctx, natspool.Options{URL: s.URL()}) // waits for it to start
	got, err := mp.Map(ctx, p, host, make([]int, 60), mp.ChunkSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i, pid := range got {
		if pid != same.Process.Pid {
			t.Fatalf("item %d ran on host %d, not on the host of this build (%d)", i, pid, same.Process.Pid)
		}
	}
}

func TestClusterCallCleanedUp(t *testing.T) {
	// A call that ends early (its ctx cancelled) takes its tasks out of
	// the stream at once: the pool goes on, and the stream is empty.
	ctx := bounded(t, 60*time.Second)
	s := startServer(t)
	startHost(t, s.WorkerURL())
	p := newPool(t, ctx, natspool.Options{URL: s.URL()})
	_, js := admin(t, s)
	stream, err := js.Stream(ctx, "MP_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	in := make([]int, 200)
	for i := range in {
		in[i] = 300
	}
	call, cancel := context.WithCancel(ctx)
	n := 0
	for _, err := range mp.ImapUnordered(call, p, snooze, slices.Values(in), mp.ChunkSize(1)) {
		if err != nil {
			t.Fatalf("before the cancel: %v", err)
		}
		if n++; n < 2 {
			continue
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs < 10 {
			t.Fatalf("the stream holds %d tasks of the call, want tens", info.State.Msgs)
		}
		cancel()
		break
	}
	cancel()
	within, cancelWithin := context.WithTimeout(ctx, 10*time.Second)
	defer cancelWithin()
	waitFor(t, within, "the stream to lose the call's tasks", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if v, err := mp.Apply(ctx, p, snooze, 1); v != 1 || err != nil {
		t.Errorf("the pool after: %d, %v", v, err)
	}
}

func TestClusterHostDrains(t *testing.T) {
	// SIGTERM to a host with a task running: it takes no more, finishes
	// the task, hands over its outcome, and exits with 0.
	ctx := bounded(t, 60*time.Second)
	s := startServer(t)
	h := startHost(t, s.WorkerURL())
	p := newPool(t, ctx, natspool.Options{URL: s.URL()})
	marker := filepath.Join(t.TempDir(), "pid")
	f := mp.ApplyAsync(ctx, p, slow, marker)
	waitStarted(t, ctx, marker)
	first, _ := os.ReadFile(marker)
	h.Process.Signal(syscall.SIGTERM)
	got, err := f.Wait(ctx)
	if err != nil {
		t.Fatalf("the task of a draining host: %v", err)
	}
	if strconv.Itoa(got[0]) != string(first) || got[1] != 0 {
		t.Errorf("the task ran again (pid %d, attempt %d), want it finished where it started (%s)", got[0], got[1], first)
	}
	if err, ok := h.Exited(10 * time.Second); !ok {
		t.Error("the host had not exited 10s after its task")
	} else if err != nil {
		t.Errorf("the host exited with %v, want 0", err)
	}
}

func TestClusterTaskRunsTwice(t *testing.T) {
	// A host stopped (SIGSTOP) in the middle of a task stops
	// heartbeating: the task goes to a second host, and runs there too.
	// Both outcomes reach the pool once the first host goes on (SIGCONT);
	// the call gets one, counted once.
	if sigStop == nil {
		t.Skip("no SIGSTOP on this system")
	}
	ctx := bounded(t, 60*time.Second)
	s := startServer(t)
	stopped := startHost(t, s.WorkerURL())
	p := newPool(t, ctx, natspool.Options{URL: s.URL()})
	// Watch the outcomes the hosts hand over.
	nc, _ := admin(t, s)
	outcomes := make(chan *nats.Msg, 8)
	if _, err := nc.ChanSubscribe("mp.results.>", outcomes); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "pid")
	f := mp.ApplyAsync(ctx, p, slow, marker)
	waitStarted(t, ctx, marker)
	first, _ := os.ReadFile(marker)
	stopped.Process.Signal(sigStop)
	startHost(t, s.WorkerURL())
	waitFor(t, ctx, "the task to run on the second host", func() bool {
		b, _ := os.ReadFile(marker)
		return len(b) > 0 && string(b) != string(first)
	})
	stopped.Process.Signal(sigCont) // its worker finished meanwhile: its outcome goes out now
	got, err := f.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the outcome came from pid %d, attempt %d", got[0], got[1])
	for n := 0; n < 2; n++ {
		select {
		case <-outcomes:
		case <-ctx.Done():
			t.Fatalf("%d outcomes handed over, want one from each host", n)
		}
	}
	// An Apply now: its outcome reaches the pool after the second one of
	// the task (on the same subscription), so the Stats count both.
	if v, err := mp.Apply(ctx, p, square, 3); v != 9 || err != nil {
		t.Errorf("the pool after: %d, %v", v, err)
	}
	if st := p.Stats(); st.TasksDone != 2 || st.TasksRunning != 0 {
		t.Errorf("Stats: %d done, %d running; want 2 (the task once, and the Apply), none running", st.TasksDone, st.TasksRunning)
	}
}

func TestClusterCancelBeforeHost(t *testing.T) {
	// A call cancelled while its task waits for a host that serves its
	// function: the task never runs, not even once a host comes.
	ctx := bounded(t, 60*time.Second)
	s := startServer(t)
	p := newPool(t, ctx, natspool.Options{URL: s.URL(), NoWorkerTimeout: 30 * time.Second})
	dir := t.TempDir()
	call, cancel := context.WithCancel(ctx)
	f := mp.ApplyAsync(call, p, touch, filepath.Join(dir, "cancelled"))
	cancel()
	if _, err := f.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled call: %v", err)
	}
	startHost(t, s.WorkerURL())
	// A task after it, which the host runs; then nothing is left to run.
	if _, err := mp.Apply(ctx, p, touch, filepath.Join(dir, "after")); err != nil {
		t.Fatal(err)
	}
	_, js := admin(t, s)
	cons, err := js.Consumer(ctx, "MP_TASKS", "mp-workers-"+seam.Fingerprint()[:16])
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "no task left to run or acknowledge", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if _, err := os.Stat(filepath.Join(dir, "cancelled")); err == nil {
		t.Error("the cancelled task ran")
	}
}

func TestOldConsumerNamed(t *testing.T) {
	// The unfiltered consumer of an earlier natspool on a kept stream: a
	// pool says what it is and what to do, rather than fail obscurely.
	ctx := bounded(t, 30*time.Second)
	s := startServer(t)
	_, js := admin(t, s)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "MP_TASKS", Subjects: []string{"mp.tasks.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, MaxBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "MP_TASKS", jetstream.ConsumerConfig{Durable: "mp-workers", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	_, err := natspool.NewPool(ctx, natspool.Options{URL: s.URL()}, mp.PoolOptions{})
	if err == nil || !strings.Contains(err.Error(), `consumer "mp-workers" of an earlier version`) {
		t.Errorf("got %v, want an error that names the earlier consumer", err)
	}
}
