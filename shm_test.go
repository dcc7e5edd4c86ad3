package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// shmJob is what the shared memory tests pass: a block and a part of it.
type shmJob struct {
	Mem        *mp.SharedMemory
	L          *mp.Lock       // taken and released, if not nil
	Q          *mp.Queue[int] // a value put and got, if not nil
	Lo, Hi     int
	Write      byte // written at Lo if not 0
	ReportUsed bool // return the worker's descriptors and memfd mappings
}

var (
	shmSum = mp.Register("test.shm.sum", func(ctx context.Context, j shmJob) (int, error) {
		if j.L != nil {
			if err := j.L.Lock(ctx); err != nil {
				return 0, err
			}
			if err := j.L.Unlock(); err != nil {
				return 0, err
			}
		}
		if j.Q != nil {
			if err := j.Q.Put(ctx, 1); err != nil {
				return 0, err
			}
			if _, err := j.Q.Get(ctx); err != nil {
				return 0, err
			}
		}
		b := j.Mem.Bytes()
		sum := 0
		for _, c := range b[j.Lo:j.Hi] {
			sum += int(c)
		}
		if j.Write != 0 {
			b[j.Lo] = j.Write
		}
		if j.ReportUsed {
			return usedHere(), nil
		}
		return sum, nil
	})
	shmReturn = mp.Register("test.shm.return", func(ctx context.Context, j shmJob) (*mp.SharedMemory, error) {
		return j.Mem, nil
	})
)

// usedHere is this process's open descriptors plus its mappings of
// anonymous shared memory, times 1000.
func usedHere() int {
	fds, _ := os.ReadDir("/proc/self/fd")
	maps, _ := os.ReadFile("/proc/self/maps")
	return len(fds) + 1000*strings.Count(string(maps), "/memfd:mp")
}

func TestSharedMemorySpawn(t *testing.T) {
	t.Parallel()
	m, err := mp.CreateSharedMemory("", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := m.Bytes()
	for i := range b {
		b[i] = byte(i % 7)
	}
	want := 0
	for _, c := range b[100:900] {
		want += int(c)
	}
	got, err, _ := spawnWait(t, shmSum, shmJob{Mem: m, Lo: 100, Hi: 900, Write: 99})
	if err != nil || got != want {
		t.Fatalf("sum in the child: got %d, %v; want %d", got, err, want)
	}
	if b[100] != 99 {
		t.Errorf("the child's write is not in the parent's memory: got %d", b[100])
	}
}

func TestSharedMemoryPoolOnce(t *testing.T) {
	// The same block in many tasks: the descriptor goes to each worker
	// once, and the worker maps it once.
	t.Parallel()
	m, err := mp.CreateSharedMemory("", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 60*time.Second)
	job := shmJob{Mem: m, Hi: 10, ReportUsed: true}
	first, err := mp.Apply(ctx, p, shmSum, job)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		got, err := mp.Apply(ctx, p, shmSum, job)
		if err != nil {
			t.Fatal(err)
		}
		if got != first {
			t.Fatalf("after %d tasks the worker holds %d descriptors and %d mappings, from %d and %d", i+1, got%1000, got/1000, first%1000, first/1000)
		}
	}
	if first/1000 != 1 {
		t.Errorf("the worker has %d mappings of the block, want 1", first/1000)
	}
	jobs := make([]shmJob, 500)
	for i := range jobs {
		jobs[i] = shmJob{Mem: m, Lo: i, Hi: i + 1}
	}
	if _, err := mp.Map(ctx, p, shmSum, jobs, mp.ChunkSize(3)); err != nil {
		t.Fatal(err)
	}
}

func TestSharedMemoryBadInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		size int
		want string
	}{
		{"", 0, "must be positive"},
		{"", -1, "must be positive"},
		{"", 1 << 62, "over this machine's memory"},
		{"a/b", 10, "use 1 to 200 letters"},
		{"..", 10, "use 1 to 200 letters"},
	} {
		if _, err := mp.CreateSharedMemory(tt.name, tt.size); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CreateSharedMemory(%q, %d): got %v, want %q", tt.name, tt.size, err, tt.want)
		}
	}
	if _, err := mp.OpenSharedMemory(fmt.Sprintf("mp-test-missing-%d", os.Getpid())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenSharedMemory of no such name: got %v, want os.ErrNotExist", err)
	}
	anon, err := mp.CreateSharedMemory("", 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := anon.Unlink(); err == nil || !strings.Contains(err.Error(), "anonymous") {
		t.Errorf("Unlink of an anonymous block: got %v", err)
	}
	anon.Close()
	if err := anon.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	p := newPool(t, mp.PoolOptions{Workers: 1})
	if _, err := mp.Apply(bounded(t, 10*time.Second), p, shmSum, shmJob{Mem: anon, Hi: 1}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("passing a closed block: got %v", err)
	}
}

func TestSharedMemoryNamed(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("mp-test-%d", os.Getpid())
	m, err := mp.CreateSharedMemory(name, 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := mp.CreateSharedMemory(name, 8192); !errors.Is(err, os.ErrExist) {
		t.Errorf("creating a taken name: got %v, want os.ErrExist", err)
	}
	o, err := mp.OpenSharedMemory(name)
	if err != nil {
		t.Fatal(err)
	}
	m.Bytes()[5] = 42
	if o.Size() != 8192 || o.Bytes()[5] != 42 || o.Name() != name {
		t.Errorf("opened block: size %d, byte %d", o.Size(), o.Bytes()[5])
	}
	o.Close()
	if err := m.Unlink(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlink(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second Unlink: got %v, want os.ErrNotExist", err)
	}
	if _, err := os.Stat("/dev/shm/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/dev/shm/%s after Unlink: %v", name, err)
	}
}

func TestSharedMemoryNotReturned(t *testing.T) {
	t.Parallel()
	m, err := mp.CreateSharedMemory("", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	if _, err := mp.Apply(bounded(t, 10*time.Second), p, shmReturn, shmJob{Mem: m}); err == nil || !strings.Contains(err.Error(), "cannot return") {
		t.Errorf("a task returning a block: got %v", err)
	}
}

// shmHoldJob holds a block until killed.
var shmHold = mp.Register("test.shm.hold", func(ctx context.Context, j shmJob) (int, error) {
	j.Mem.Bytes()[j.Lo] = 1
	time.Sleep(time.Hour)
	return 0, nil
})

func TestSharedMemoryLeavesNothing(t *testing.T) {
	// Every process that holds anonymous blocks is SIGKILLed: nothing is
	// left in /dev/shm, and this process holds no descriptor more than
	// before once it has closed its blocks.
	shmBefore, _ := os.ReadDir("/dev/shm")
	ctx := bounded(t, 60*time.Second)
	// Let the runtime open what it keeps open.
	if _, err, _ := spawnWait(t, procSquare, 1); err != nil {
		t.Fatal(err)
	}
	fdsBefore := len(openFDs(t))
	var mems []*mp.SharedMemory
	var procs []*mp.Process[int]
	for i := range 3 {
		m, err := mp.CreateSharedMemory("", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		mems = append(mems, m)
		p, err := mp.Spawn(ctx, shmHold, shmJob{Mem: m, Lo: i}, mp.WorkerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for i, m := range mems { // each child has mapped its block
		for m.Bytes()[i] != 1 {
			if ctx.Err() != nil {
				t.Fatal("a child never wrote to its block")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, p := range procs {
		p.Kill()
		p.Wait(ctx)
	}
	for _, m := range mems {
		m.Close()
	}
	shmAfter, _ := os.ReadDir("/dev/shm")
	if len(shmAfter) != len(shmBefore) {
		t.Errorf("/dev/shm has %d entries, had %d", len(shmAfter), len(shmBefore))
	}
	if fds := len(openFDs(t)); fds > fdsBefore {
		t.Errorf("%d descriptors open, %d before", fds, fdsBefore)
	}
}

func TestSharedMemoryForgotten(t *testing.T) {
	// A new block per task, closed after it: the worker drops each one
	// instead of keeping them all mapped.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 60*time.Second)
	most := 0
	for range 300 {
		m, err := mp.CreateSharedMemory("", 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		used, err := mp.Apply(ctx, p, shmSum, shmJob{Mem: m, Hi: 1, ReportUsed: true})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, used/1000)
	}
	// A few linger until the worker collects the objects decoded from them.
	if most > 8 {
		t.Errorf("the worker had up to %d blocks mapped at once, want at most 8", most)
	}
}

type nestedJob struct{ A, B *mp.SharedMemory }

var (
	shmNestedRead = mp.Register("test.shm.nested-read", func(ctx context.Context, j nestedJob) (string, error) {
		return string(j.A.Bytes()[:1]) + string(j.B.Bytes()[:1]), nil
	})
	// shmNested makes a block of its own and passes it, with the one it
	// received, to a process of its own.
	shmNested = mp.Register("test.shm.nested", func(ctx context.Context, j nestedJob) (string, error) {
		b, err := mp.CreateSharedMemory("", 4096)
		if err != nil {
			return "", err
		}
		defer b.Close()
		b.Bytes()[0] = 'B'
		p, err := mp.Spawn(ctx, shmNestedRead, nestedJob{A: j.A, B: b}, mp.WorkerOptions{})
		if err != nil {
			return "", err
		}
		return p.Wait(ctx)
	})
)

func TestSharedMemoryNested(t *testing.T) {
	// A worker's own blocks had the same IDs as its parent's: a grandchild
	// got the wrong one.
	t.Parallel()
	a, err := mp.CreateSharedMemory("", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Bytes()[0] = 'A'
	got, err, _ := spawnWait(t, shmNested, nestedJob{A: a})
	if err != nil || got != "AB" {
		t.Errorf("the grandchild read %q, %v; want AB", got, err)
	}
}

// TestHelperSmallShm is not a test: TestSharedMemoryOverShmSize runs it
// with a /dev/shm of 1 MiB, in a mount namespace of its own.
func TestHelperSmallShm(t *testing.T) {
	if os.Getenv(helperEnv) != "smallshm" {
		t.Skip("helper process for TestSharedMemoryOverShmSize")
	}
	_, err := mp.CreateSharedMemory("mp-test-too-big", 2<<20)
	fmt.Println("error:", err, errors.Is(err, syscall.ENOSPC))
	m, err := mp.CreateSharedMemory("mp-test-fits", 512<<10)
	if err == nil {
		m.Bytes()[512<<10-1] = 1
		m.Unlink()
		m.Close()
	}
	fmt.Println("fits:", err)
	os.Exit(0)
}

func TestSharedMemoryOverShmSize(t *testing.T) {
	// A named block bigger than what /dev/shm has free was made, and its
	// first touch past the free space was a SIGBUS.
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare command to make a mount namespace")
	}
	if err := exec.Command(unshare, "--mount", "true").Run(); err != nil {
		t.Skipf("cannot make a mount namespace here: %v", err)
	}
	ctx := bounded(t, 30*time.Second)
	cmd := exec.CommandContext(ctx, unshare, "--mount", "sh", "-c",
		`mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -test.run='^TestHelperSmallShm$'`, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=smallshm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "do not fit in /dev/shm") || !strings.Contains(string(out), " true\n") {
		t.Errorf("a block over /dev/shm's free space: want an error matching ENOSPC; got\n%s", out)
	}
	if !strings.Contains(string(out), "fits: <nil>") {
		t.Errorf("a block within /dev/shm's free space was refused:\n%s", out)
	}
}
