package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

type point struct {
	X, Y int
	Tag  string
}

var (
	procSquare = mp.Register("test.proc.square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	procPoint  = mp.Register("test.proc.point", func(ctx context.Context, p point) (point, error) {
		return point{X: p.Y, Y: p.X, Tag: p.Tag + "!"}, nil
	})
	procSleep = mp.Register("test.proc.sleep", func(ctx context.Context, d time.Duration) (struct{}, error) {
		time.Sleep(d)
		return struct{}{}, nil
	})
	procPanic = mp.Register("test.proc.panic", func(ctx context.Context, msg string) (int, error) {
		panicHere(msg)
		return 0, nil
	})
	procExit = mp.Register("test.proc.exit", func(ctx context.Context, code int) (int, error) {
		os.Exit(code)
		return 0, nil
	})
	procFail = mp.Register("test.proc.fail", func(ctx context.Context, msg string) (int, error) {
		if msg == "notexist" {
			return 0, &os.PathError{Op: "open", Path: "/nope", Err: os.ErrNotExist}
		}
		return 0, errors.New(msg)
	})
	procInfo = mp.Register("test.proc.info", func(ctx context.Context, _ struct{}) (mp.ProcessInfo, error) {
		return mp.Current(), nil
	})
	procChan = mp.Register("test.proc.chan", func(ctx context.Context, c chan int) (int, error) { return 0, nil })
)

//go:noinline
func panicHere(msg string) { panic(msg) }

func spawnWait[T, R any](t *testing.T, f mp.Func[T, R], arg T) (R, error, *mp.Process[R]) {
	t.Helper()
	return spawnWaitOpts(t, f, arg, mp.WorkerOptions{})
}

func spawnWaitOpts[T, R any](t *testing.T, f mp.Func[T, R], arg T, o mp.WorkerOptions) (R, error, *mp.Process[R]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := mp.Spawn(ctx, f, arg, o)
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	r, err := p.Wait(ctx)
	return r, err, p
}

// spawn starts f(arg) in a new process, under ctx, and fails the test if
// it cannot.
func spawn[T, R any](t *testing.T, ctx context.Context, f mp.Func[T, R], arg T) *mp.Process[R] {
	t.Helper()
	p, err := mp.Spawn(ctx, f, arg, mp.WorkerOptions{})
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	return p
}

func TestSpawnResultTyped(t *testing.T) {
	t.Parallel()
	got, err, p := spawnWait(t, procPoint, point{X: 1, Y: 2, Tag: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (point{X: 2, Y: 1, Tag: "a!"}); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if p.ExitCode() != 0 {
		t.Errorf("exit code: got %d, want 0", p.ExitCode())
	}
	if p.PID() == os.Getpid() || p.PID() <= 0 {
		t.Errorf("pid: got %d", p.PID())
	}
}

func TestSpawnKilled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := mp.Spawn(ctx, procSleep, time.Hour, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err = p.Wait(ctx)
	exit, ok := errors.AsType[*mp.ExitError](err)
	if !ok {
		t.Fatalf("got %v (%T), want *mp.ExitError", err, err)
	}
	if exit.Signal() != syscall.SIGKILL {
		t.Errorf("signal: got %v, want SIGKILL", exit.Signal())
	}
	if !strings.Contains(err.Error(), "killed") {
		t.Errorf("message %q does not say it was killed", err)
	}
}

func TestSpawnPanic(t *testing.T) {
	t.Parallel()
	_, err, p := spawnWait(t, procPanic, "boom")
	pe, ok := errors.AsType[*mp.PanicError](err)
	if !ok {
		t.Fatalf("got %v (%T), want *mp.PanicError", err, err)
	}
	if pe.Value != "boom" {
		t.Errorf("value: got %q, want boom", pe.Value)
	}
	if !strings.Contains(string(pe.Stack), "panicHere") {
		t.Errorf("stack lacks the function's frame:\n%s", pe.Stack)
	}
	if p.ExitCode() != 1 {
		t.Errorf("exit code: got %d, want 1", p.ExitCode())
	}
}

func TestSpawnExitCode(t *testing.T) {
	t.Parallel()
	_, err, p := spawnWait(t, procExit, 3)
	exit, ok := errors.AsType[*mp.ExitError](err)
	if !ok {
		t.Fatalf("got %v (%T), want *mp.ExitError", err, err)
	}
	if exit.ExitCode() != 3 || p.ExitCode() != 3 {
		t.Errorf("exit code: got %d and %d, want 3", exit.ExitCode(), p.ExitCode())
	}
}

func TestSpawnError(t *testing.T) {
	t.Parallel()
	_, err, _ := spawnWait(t, procFail, "notexist")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error matching os.ErrNotExist", err)
	}
	re, ok := errors.AsType[*mp.RemoteError](err)
	if !ok || re.Type != "*fs.PathError" {
		t.Errorf("got %#v, want a *mp.RemoteError of type *fs.PathError", err)
	}
}

func TestSpawnCurrent(t *testing.T) {
	t.Parallel()
	info, err, p := spawnWait(t, procInfo, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Worker || info.PID != p.PID() || info.PPID != os.Getpid() || !strings.HasPrefix(info.Name, "Process-") {
		t.Errorf("got %+v, want a worker with pid %d, parent %d, named Process-N", info, p.PID(), os.Getpid())
	}
	if me := mp.Current(); me.Worker || me.Name != "MainProcess" {
		t.Errorf("parent: got %+v", me)
	}
}

func TestSpawnUnencodable(t *testing.T) {
	t.Parallel()
	_, err := mp.Spawn(t.Context(), procChan, make(chan int), mp.WorkerOptions{})
	if err == nil || !strings.Contains(err.Error(), "chan int") {
		t.Errorf("got %v, want an error naming chan int", err)
	}
	_, err = mp.Spawn(t.Context(), mp.Func[int, int]{}, 1, mp.WorkerOptions{})
	if !errors.Is(err, mp.ErrNotRegistered) {
		t.Errorf("got %v, want ErrNotRegistered", err)
	}
}

func TestSpawnContextKills(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	p, err := mp.Spawn(ctx, procSleep, time.Hour, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	_, err = p.Wait(wctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if _, ok := errors.AsType[*mp.ExitError](err); !ok {
		t.Errorf("got %v, want it to carry an *mp.ExitError", err)
	}
	_ = procSquare
}

// TestHelperWarmSpare is not a test: TestSpawnWarmSpare runs it in a
// process of its own, whose spare dies with it.
func TestHelperWarmSpare(t *testing.T) {
	if os.Getenv(helperEnv) != "spare" {
		t.Skip("helper process for TestSpawnWarmSpare")
	}
	ctx := bounded(t, 30*time.Second)
	o := mp.WorkerOptions{KeepSpare: true}
	if got, err, _ := spawnWaitOpts(t, procSquare, 3, o); err != nil || got != 9 {
		t.Fatalf("first Spawn: got %d, %v", got, err)
	}
	// The first Spawn left a spare starting. A later Spawn must run in a
	// process that was running before it was called: try until one does
	// (a Spawn made while the spare is still starting starts its own).
	spares := func() map[int]bool {
		found := make(map[int]bool)
		pids, _ := children(t)
		for _, pid := range pids {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), "[mp Process]") {
				found[pid] = true
			}
		}
		return found
	}
	spare := 0
	for i := 0; spare == 0; i++ {
		if ctx.Err() != nil || i == 200 {
			t.Fatal("no Spawn ran in a spare")
		}
		before := spares()
		p, err := mp.Spawn(ctx, procSquare, i, o)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := p.Result(ctx); err != nil || got != i*i {
			t.Fatalf("Spawn: Result %d, %v", got, err)
		}
		if got, err := p.Wait(ctx); err != nil || got != i*i {
			t.Fatalf("Spawn: got %d, %v", got, err)
		}
		if before[p.PID()] {
			spare = p.PID()
		} else {
			time.Sleep(5 * time.Millisecond) // give the spare time to start
		}
	}
	// Options that shape the process are not the spare's: a process of their own.
	dir := t.TempDir()
	if got, err, p := spawnWaitOpts(t, procSquare, 5, mp.WorkerOptions{KeepSpare: true, Dir: dir}); err != nil || got != 25 || p.PID() == spare {
		t.Errorf("Spawn with a Dir: got %d, %v", got, err)
	}
	fmt.Println("spare ok")
}

func TestSpawnWarmSpare(t *testing.T) {
	t.Parallel()
	cmd, sc := startHelper(t, "TestHelperWarmSpare", helperEnv+"=spare")
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := cmd.Wait(); err != nil || !slices.Contains(out, "spare ok") {
		t.Errorf("helper: %v\n%s", err, strings.Join(out, "\n"))
	}
}

func TestProcessResult(t *testing.T) {
	// Result gives what Wait gives: the value, the function's error, or how
	// the process died without one.
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	// (A warm spare's path is tested in TestSpawnWarmSpare's helper: a
	// spare is a child that would outlive this test.)
	p, err := mp.Spawn(ctx, procSquare, 7, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Result(ctx)
	if v != 49 || err != nil {
		t.Errorf("Result: %d, %v", v, err)
	}
	if w, werr := p.Wait(ctx); w != v || werr != err {
		t.Errorf("Wait after Result: %d, %v", w, werr)
	}
	p, err = mp.Spawn(ctx, procExit, 3, mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Result(ctx)
	var exit *mp.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Result of a process that exited: got %v, want an *ExitError with code 3", err)
	}
	p, err = mp.Spawn(ctx, procFail, "no", mp.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Result(ctx); err == nil || !strings.Contains(err.Error(), "no") {
		t.Errorf("Result of a function that failed: got %v", err)
	}
	if _, err := p.Result(nil); err == nil {
		t.Error("Result with a nil ctx")
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("the process never exited")
	}
}

// taskInfo exits the first time it runs for a marker file (made then),
// and returns its TaskInfo the next.
var taskInfo = mp.Register("test.task-info", func(ctx context.Context, marker string) (mp.TaskInfo, error) {
	ti, ok := mp.TaskInfoFrom(ctx)
	if !ok {
		return ti, errors.New("no TaskInfo in the task's ctx")
	}
	if marker != "" {
		if _, err := os.Stat(marker); err != nil {
			os.WriteFile(marker, nil, 0o600)
			os.Exit(1)
		}
	}
	return ti, nil
})

func TestTaskInfo(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	got, err, _ := spawnWait(t, taskInfo, "")
	if err != nil || got.ID == 0 || got.Attempt != 0 {
		t.Errorf("in a Spawn: %+v, %v", got, err)
	}
	p := newPool(t, mp.PoolOptions{Workers: 1, Retries: 1})
	first, err := mp.Apply(ctx, p, taskInfo, "")
	if err != nil || first.Attempt != 0 {
		t.Fatalf("in a pool: %+v, %v", first, err)
	}
	again, err := mp.Apply(ctx, p, taskInfo, filepath.Join(t.TempDir(), "ran"))
	if err != nil || again.Attempt != 1 || again.ID == first.ID {
		t.Errorf("a task run again after its worker died: %+v, %v; want attempt 1 and an ID of its own", again, err)
	}
	if _, ok := mp.TaskInfoFrom(ctx); ok {
		t.Error("a TaskInfo in a context that is no task's")
	}
}
