package mp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var (
	// hardGarbage writes bytes that are no frame to its worker's connection.
	hardGarbage = mp.Register("test.hard.garbage", func(ctx context.Context, junk []byte) (int, error) {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			// The worker's socket and its pipe to the parent (any pipe but
			// its standard streams).
			var fd int
			fmt.Sscan(e.Name(), &fd)
			if target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); strings.HasPrefix(target, "socket:") || strings.HasPrefix(target, "pipe:") && fd > 2 {
				f := os.NewFile(uintptr(fd), "conn")
				f.Write(junk)
			}
		}
		time.Sleep(time.Hour) // the parent must not wait for this
		return 0, nil
	})

	hardLines = mp.Register("test.hard.lines", func(ctx context.Context, w int) (int, error) {
		for i := range 1000 {
			fmt.Fprintf(os.Stdout, "worker %d out %d %s\n", w, i, strings.Repeat("x", i%97))
			fmt.Fprintf(os.Stderr, "worker %d err %d %s\n", w, i, strings.Repeat("y", i%89))
		}
		return w, nil
	})

	hardIdentity = mp.Register("test.hard.identity", func(ctx context.Context, _ int) ([]string, error) {
		comm, err := os.ReadFile("/proc/self/comm")
		return []string{os.Args[0], strings.TrimSpace(string(comm)), fmt.Sprint(runtime.GOMAXPROCS(0))}, err
	})

	// hardProcs returns the worker's GOMAXPROCS and the GOMAXPROCS of its
	// environment ("-" if unset), which what it starts would inherit.
	hardProcs = mp.Register("test.hard.procs", func(ctx context.Context, _ int) ([2]string, error) {
		env, ok := os.LookupEnv("GOMAXPROCS")
		if !ok {
			env = "-"
		}
		return [2]string{fmt.Sprint(runtime.GOMAXPROCS(0)), env}, nil
	})

	hardErrField = mp.Register("test.hard.errfield", func(ctx context.Context, x int) (withErr, error) {
		return withErr{V: x}, nil
	})
)

type withErr struct {
	V   int
	Err error
}

func TestNewPoolNoRace(t *testing.T) {
	// Under -race, supervisors that started while the pool's slots were
	// still being made raced on them: many pool sizes, many times.
	t.Parallel()
	for _, tt := range []struct{ workers, times int }{{2, 6}, {3, 6}, {16, 3}, {64, 1}} {
		t.Run(fmt.Sprint(tt.workers), func(t *testing.T) {
			for range tt.times {
				p := newPool(t, mp.PoolOptions{Workers: tt.workers})
				ctx := bounded(t, 60*time.Second)
				var futures []*mp.Future[int]
				for i := range 3 * tt.workers {
					futures = append(futures, mp.ApplyAsync(ctx, p, poolSquare, i))
				}
				for i, f := range futures {
					if got, err := f.Wait(ctx); err != nil || got != i*i {
						t.Fatalf("task %d: got %d, %v", i, got, err)
					}
				}
				p.Close()
			}
		})
	}
}

func TestCorruptStream(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		junk []byte
		want string
	}{
		{"short length", []byte{0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 1}, "shorter than its header"},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 9, 9, 9, 9, 9, 9, 9, 9, 9}, "limit"},
		{"unknown kind", []byte{0, 0, 0, 9, 99, 0, 0, 0, 0, 0, 0, 0, 1}, "unexpected kind(99) frame"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, mp.PoolOptions{Workers: 1})
			ctx := bounded(t, 30*time.Second)
			start := time.Now()
			_, err := mp.Apply(ctx, p, hardGarbage, tt.junk)
			took := time.Since(start)
			t.Logf("failed after %v: %v", took, err)
			if !errors.Is(err, mp.ErrProtocol) || !strings.Contains(err.Error(), "broke the protocol") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrProtocol saying %q", err, tt.want)
			}
			if exit, ok := errors.AsType[*mp.ExitError](err); !ok || exit.PID == 0 {
				t.Errorf("got %v, want an *ExitError", err)
			}
			if took > 2*time.Second { // it stalled for 5s before, in the worst case
				t.Errorf("the call failed after %v, want at once", took)
			}
			if got, err := mp.Apply(ctx, p, poolSquare, 7); err != nil || got != 49 {
				t.Errorf("after the protocol error: got %d, %v", got, err)
			}
			if n := p.Stats().RestartCauses["protocol"]; n != 1 {
				t.Errorf("Stats counts %d protocol restarts, want 1", n)
			}
		})
	}
}

func TestSharedOutputWriter(t *testing.T) {
	// One bytes.Buffer for both streams of two workers, as os/exec users
	// write: all 4,000 lines arrive, each whole, with no race.
	t.Parallel()
	var buf bytes.Buffer
	p := newPool(t, mp.PoolOptions{Workers: 2, Worker: mp.WorkerOptions{Stdout: &buf, Stderr: &buf}})
	if _, err := mp.Map(bounded(t, 60*time.Second), p, hardLines, []int{0, 1}, mp.ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	p.Close() // the workers' output is all written once they have exited
	seen := make(map[string]bool)
	for line := range strings.Lines(buf.String()) {
		var w, i int
		var stream, pad string
		n, _ := fmt.Sscanf(line, "worker %d %s %d %s\n", &w, &stream, &i, &pad)
		want := fmt.Sprintf("worker %d %s %d %s\n", w, stream, i, strings.Repeat(map[string]string{"out": "x", "err": "y"}[stream], i%map[string]int{"out": 97, "err": 89}[stream]))
		if (n != 4 && i%97 != 0 && i%89 != 0) || (line != want && strings.TrimRight(line, " \n") != strings.TrimRight(want, " \n")) {
			t.Fatalf("mangled line %q, want %q", line, want)
		}
		seen[fmt.Sprint(w, stream, i)] = true
	}
	if len(seen) != 4000 {
		t.Errorf("got %d distinct lines, want 4000", len(seen))
	}
}

func TestNilContext(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	var nilCtx context.Context // a nil ctx is what is under test
	check := func(name string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "nil Context") {
			t.Errorf("%s: got %v, want an error about the nil Context", name, err)
		}
	}
	_, err := mp.NewPool(nilCtx, mp.PoolOptions{})
	check("NewPool", err)
	_, err = mp.Map(nilCtx, p, poolSquare, []int{1})
	check("Map", err)
	_, _, err = mp.MapAll(nilCtx, p, poolSquare, []int{1})
	check("MapAll", err)
	_, err = mp.Apply(nilCtx, p, poolSquare, 1)
	check("Apply", err)
	_, err = mp.ApplyAsync(nilCtx, p, poolSquare, 1).Wait(t.Context())
	check("ApplyAsync", err)
	_, err = mp.Spawn(nilCtx, procSquare, 1, mp.WorkerOptions{})
	check("Spawn", err)
	for _, seq := range []func(yield func(int, error) bool){
		mp.Imap(nilCtx, p, poolSquare, func(yield func(int) bool) { yield(1) }),
		mp.ImapUnordered(nilCtx, p, poolSquare, func(yield func(int) bool) { yield(1) }),
	} {
		for _, err := range seq {
			check("Imap", err)
		}
	}
	_, err = mp.ApplyAsync(t.Context(), p, poolSquare, 1).Wait(nilCtx)
	check("Future.Wait", err)
	check("Shutdown", p.Shutdown(nilCtx))
	if got, err := mp.Apply(t.Context(), p, poolSquare, 3); err != nil || got != 9 {
		t.Errorf("after Shutdown(nil): got %d, %v; want the pool still open", got, err)
	}
}

func TestInterfaceFieldRefused(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	before := p.Stats().TasksDone
	_, err := mp.Apply(bounded(t, 10*time.Second), p, hardErrField, 1)
	if err == nil || !strings.Contains(err.Error(), "interface type error") || !strings.Contains(err.Error(), "err.Error()") {
		t.Errorf("got %v, want the error field refused with advice", err)
	}
	if p.Stats().TasksDone != before {
		t.Error("the task ran")
	}
}

// hiddenPair has no exported fields: the codec would send it as {}.
type hiddenPair struct{ a, b int }

var (
	hardHiddenArg = mp.Register("test.hard.hidden-arg", func(ctx context.Context, p hiddenPair) (int, error) {
		return p.a + p.b, nil
	})
	hardHiddenResult = mp.Register("test.hard.hidden-result", func(ctx context.Context, x int) (hiddenPair, error) {
		return hiddenPair{x, x}, nil
	})
	hardHiddenNested = mp.Register("test.hard.hidden-nested", func(ctx context.Context, x struct{ P []hiddenPair }) (int, error) {
		return len(x.P), nil
	})
)

func TestNoExportedFieldsRefused(t *testing.T) {
	// A struct without exported fields crossed as {}: the function got
	// the zero value, and the call returned its result with no error.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 10*time.Second)
	before := p.Stats().TasksDone
	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"argument", func() error { _, err := mp.Apply(ctx, p, hardHiddenArg, hiddenPair{1, 2}); return err },
			"mp: test.hard.hidden-arg: the argument type cannot be encoded: struct type mp_test.hiddenPair has no exported fields"},
		{"result", func() error { _, err := mp.Apply(ctx, p, hardHiddenResult, 1); return err },
			"mp: test.hard.hidden-result: the result type cannot be encoded: struct type mp_test.hiddenPair has no exported fields"},
		{"nested", func() error {
			_, err := mp.Map(ctx, p, hardHiddenNested, []struct{ P []hiddenPair }{{P: []hiddenPair{{1, 2}}}})
			return err
		}, "field P of struct { P []mp_test.hiddenPair }: in []mp_test.hiddenPair: struct type mp_test.hiddenPair has no exported fields"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "CBOR encodes only exported fields") {
				t.Errorf("got %v, want an error containing %q and saying why", err, tt.want)
			}
		})
	}
	if p.Stats().TasksDone != before {
		t.Error("a task ran")
	}
}

func TestMessagesNameFunctionOnce(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	_, err := mp.Map(bounded(t, 10*time.Second), p, regAny, []any{1, make(chan int)})
	if err == nil || strings.Count(err.Error(), "test.reg.any") != 1 {
		t.Errorf("got %v, want the function named once", err)
	}
}

func TestInvalidOptionNamesField(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		opts mp.PoolOptions
		want string
	}{
		{mp.PoolOptions{Workers: -1}, "PoolOptions.Workers is -1"},
		{mp.PoolOptions{TaskTimeout: -time.Second}, "PoolOptions.TaskTimeout is -1s"},
		{mp.PoolOptions{MaxQueued: -2}, "PoolOptions.MaxQueued is -2"},
		{mp.PoolOptions{Worker: mp.WorkerOptions{GOMAXPROCS: -2}}, "PoolOptions.Worker.GOMAXPROCS is -2"},
	} {
		_, err := mp.NewPool(t.Context(), tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

func TestWorkerIdentity(t *testing.T) {
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1, Worker: mp.WorkerOptions{GOMAXPROCS: 1}})
	got, err := mp.Apply(bounded(t, 10*time.Second), p, hardIdentity, 0)
	if err != nil {
		t.Fatal(err)
	}
	argv0, comm, procs := got[0], got[1], got[2]
	if !strings.HasPrefix(argv0, os.Args[0]+" [mp PoolWorker-") {
		t.Errorf("argv[0] is %q, want the program's followed by a worker mark", argv0)
	}
	base := filepath.Base(os.Args[0])
	if !strings.HasSuffix(comm, "[mp]") || !strings.HasPrefix(base, strings.TrimSuffix(comm, "[mp]")) {
		t.Errorf("command name is %q, want a prefix of %q and [mp]", comm, base)
	}
	if procs != "1" {
		t.Errorf("GOMAXPROCS is %s in the worker, want 1", procs)
	}
}

// TestWorkerGOMAXPROCS checks that a pool's worker runs with the
// GOMAXPROCS its options ask for from its start, while its environment,
// which what it starts inherits, stays what it would have been.
func TestWorkerGOMAXPROCS(t *testing.T) {
	t.Parallel()
	inherited, ok := os.LookupEnv("GOMAXPROCS")
	if !ok {
		inherited = "-"
	}
	for _, tc := range []struct {
		name  string
		o     mp.WorkerOptions
		procs string
		env   string
	}{
		{"default", mp.WorkerOptions{}, "1", inherited},
		{"set", mp.WorkerOptions{GOMAXPROCS: 3}, "3", inherited},
		{"env", mp.WorkerOptions{Env: []string{"GOMAXPROCS=2"}}, "2", "2"},
		{"set and env", mp.WorkerOptions{GOMAXPROCS: 3, Env: []string{"GOMAXPROCS=2"}}, "3", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, mp.PoolOptions{Workers: 1, Worker: tc.o})
			got, err := mp.Apply(bounded(t, 10*time.Second), p, hardProcs, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != tc.procs || got[1] != tc.env {
				t.Errorf("worker has GOMAXPROCS %s and GOMAXPROCS=%s in its environment, want %s and %s", got[0], got[1], tc.procs, tc.env)
			}
		})
	}
}

// hardRace has a data race, which a race-enabled worker must not keep to
// itself.
var hardRace = mp.Register("test.hard.race", func(ctx context.Context, n int) (int, error) {
	var x int
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range n {
				x = i
			}
		})
	}
	wg.Wait()
	return x, nil
})

// hardRaceOnce races only where the file at path does not exist yet, and
// makes it: run again, it does not race.
var hardRaceOnce = mp.Register("test.hard.race-once", func(ctx context.Context, path string) (int, error) {
	if _, err := os.Stat(path); err == nil {
		return 0, nil
	}
	os.WriteFile(path, nil, 0o600)
	var x int
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range 100000 {
				x = i
			}
		})
	}
	wg.Wait()
	return x, nil
})

func TestRaceInChunkIsFinal(t *testing.T) {
	// A chunk whose worker died was split and run again: a race that did
	// not happen again went unreported.
	if !raceEnabled {
		t.Skip("needs -race")
	}
	t.Parallel()
	var stderr bytes.Buffer
	p := newPool(t, mp.PoolOptions{Workers: 1, Worker: mp.WorkerOptions{Stderr: &stderr}})
	marker := filepath.Join(t.TempDir(), "raced")
	_, err := mp.Map(bounded(t, 30*time.Second), p, hardRaceOnce, []string{marker, marker}, mp.ChunkSize(2))
	if exit, ok := errors.AsType[*mp.ExitError](err); !ok || exit.ExitCode() != 66 {
		t.Errorf("got %v, want the race report as an *ExitError", err)
	}
}

func TestRaceInTaskFails(t *testing.T) {
	if !raceEnabled {
		t.Skip("needs -race")
	}
	t.Parallel()
	var stderr bytes.Buffer // the report, kept out of the test's output
	p := newPool(t, mp.PoolOptions{Workers: 1, Worker: mp.WorkerOptions{Stderr: &stderr}})
	_, err := mp.Apply(bounded(t, 30*time.Second), p, hardRace, 100000)
	exit, ok := errors.AsType[*mp.ExitError](err)
	if !ok || exit.ExitCode() != 66 || !strings.Contains(err.Error(), "DATA RACE") || !bytes.Contains(exit.Output, []byte("WARNING: DATA RACE")) {
		t.Errorf("got %v, want an *ExitError with the race report", err)
	}
}

func TestShutdownLogsNoWarning(t *testing.T) {
	// Every worker stopped by a normal Shutdown was logged as a WARN.
	t.Parallel()
	var mu sync.Mutex
	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newPool(t, mp.PoolOptions{Workers: 3, Logger: logger})
	ctx := bounded(t, 30*time.Second)
	if _, err := mp.Map(ctx, p, poolSquare, seq(10)); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := logged.String()
	if strings.Contains(out, "level=WARN") || strings.Count(out, "worker stopped") != 3 {
		t.Errorf("Shutdown logged:\n%s\nwant 3 workers stopped at INFO, no WARN", out)
	}
}

var hardSlowInit = mp.Register("test.hard.slow-init", func(ctx context.Context, d time.Duration) (struct{}, error) {
	time.Sleep(d)
	return struct{}{}, nil
})

func TestNewPoolDeadlineDuringInit(t *testing.T) {
	// Close waited for workers still in their Init, so NewPool overran its ctx.
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2, Init: mp.Bind(hardSlowInit, 20*time.Second)})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want DeadlineExceeded", err)
	}
	if took > 5*time.Second {
		t.Errorf("NewPool returned %v after its 300ms deadline, want promptly", took)
	}
	t.Logf("NewPool returned after %v", took)
}
