package mp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// children returns the pids of this process's children, and which of them
// are zombies.
func children(t *testing.T) (pids, zombies []int) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := procStat(pid)
		if ok && ppid == me {
			pids = append(pids, pid)
			if state == "Z" {
				zombies = append(zombies, pid)
			}
		}
	}
	return pids, zombies
}

// procStat returns a process's parent and state, from /proc/pid/stat.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	// The command name is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0], true
}

func openFDs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var fds []string
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fds = append(fds, e.Name()+" -> "+target)
	}
	return fds
}

// TestSpawnManyNoLeaks runs alone (not parallel): it counts this
// process's file descriptors and children.
func TestSpawnManyNoLeaks(t *testing.T) {
	ctx := bounded(t, 120*time.Second)
	spawnOnce := func(i int) {
		p, err := mp.Spawn(ctx, procSquare, i, mp.WorkerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := p.Wait(ctx); err != nil || got != i*i {
			t.Fatalf("spawn %d: got %d, %v; want %d, nil", i, got, err, i*i)
		}
	}
	spawnOnce(0) // let the runtime open what it keeps open (epoll, the starter thread)
	before := openFDs(t)
	for i := range 200 {
		spawnOnce(i)
	}
	after := openFDs(t)
	if !slices.Equal(before, after) {
		t.Errorf("file descriptors: got %v after 200 spawns, want %v", after, before)
	}
	if pids, zombies := children(t); len(pids) != 0 || len(zombies) != 0 {
		t.Errorf("got children %v (zombies %v) after 200 spawns, want none", pids, zombies)
	}
}

const helperEnv = "MP_TEST_HELPER"

// TestHelperParent is not a test: it is the parent process that
// TestChildrenDieWithParent starts and kills. It spawns three children,
// prints their pids and waits to be killed.
func TestHelperParent(t *testing.T) {
	if os.Getenv(helperEnv) != "parent" {
		t.Skip("helper process for TestChildrenDieWithParent")
	}
	for range 3 {
		p, err := mp.Spawn(context.Background(), procSleep, time.Hour, mp.WorkerOptions{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("child", p.PID())
	}
	fmt.Println("ready")
	select {}
}

func TestChildrenDieWithParent(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			testChildrenDieWith(t, sig)
		})
	}
}

// startHelper runs this test binary's helper test name as a process of its
// own, with env added, and returns it with a scanner of its stdout. The
// process is killed when the test ends.
func startHelper(t *testing.T, name string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.CommandContext(bounded(t, 60*time.Second), os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// testChildrenDieWith starts a parent that spawns three children, sends
// the parent sig, and checks that the children are gone within 2s.
func testChildrenDieWith(t *testing.T, sig syscall.Signal) {
	cmd, sc := startHelper(t, "TestHelperParent", helperEnv+"=parent")
	var kids []int
	for sc.Scan() {
		line := sc.Text()
		if pid, ok := strings.CutPrefix(line, "child "); ok {
			n, _ := strconv.Atoi(pid)
			kids = append(kids, n)
		}
		if line == "ready" || strings.HasPrefix(line, "error") {
			break
		}
	}
	if len(kids) != 3 {
		t.Fatalf("helper started children %v, want 3", kids)
	}
	for _, pid := range kids {
		if !alive(pid) {
			t.Fatalf("child %d is not running before its parent is signalled", pid)
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	for _, pid := range kids {
		for alive(pid) {
			if time.Since(signalled) > 2*time.Second {
				t.Fatalf("child %d still alive 2s after its parent got %v", pid, sig)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("all children gone %v after their parent got %v", time.Since(signalled), sig)
}

// alive reports whether pid is a running process (not gone, not a zombie).
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

var procExtra = os.Getenv("MP_TEST_EXTRA_FUNC") == "1"

func init() {
	if procExtra {
		// A worker started with this variable has one more function than its
		// parent: it stands for a worker built from another commit.
		mp.Register("test.extra", func(ctx context.Context, x int) (int, error) { return x, nil })
	}
}

func TestSpawnOtherBuild(t *testing.T) {
	t.Parallel()
	ctx := bounded(t, 30*time.Second)
	p, err := mp.Spawn(ctx, procSquare, 2, mp.WorkerOptions{Env: []string{"MP_TEST_EXTRA_FUNC=1"}, Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Wait(ctx)
	if !errors.Is(err, mp.ErrWorkerStart) || !strings.Contains(err.Error(), "same build") {
		t.Errorf("got %v, want an ErrWorkerStart that asks for the same build", err)
	}
}

// TestPoolCloseLeavesNothing runs alone: after a pool has run tasks, lost
// workers and been closed, no process, file descriptor or goroutine of
// its remains.
func TestPoolCloseLeavesNothing(t *testing.T) {
	ctx := bounded(t, 60*time.Second)
	warm := newPool(t, mp.PoolOptions{Workers: 1}) // let the runtime open what it keeps open
	warm.Close()
	fds := openFDs(t)
	goroutines := mpGoroutines()

	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2, TaskTimeout: 300 * time.Millisecond, Worker: mp.WorkerOptions{Stderr: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = mp.MapAll(ctx, p, poolCrash, seq(200), mp.ChunkSize(10))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if pids, zombies := children(t); len(pids) != 0 || len(zombies) != 0 {
		t.Errorf("after Close: children %v (zombies %v), want none", pids, zombies)
	}
	for _, fd := range openFDs(t) {
		if !slices.Contains(fds, fd) {
			t.Errorf("after Close: file descriptor %s is open, which was not before", fd)
		}
	}
	// Close has waited for every goroutine to finish its work; give the
	// last ones (a reaper that has closed its channel) time to return.
	deadline := time.Now().Add(5 * time.Second)
	for g := mpGoroutines(); g > goroutines; g = mpGoroutines() {
		if time.Now().After(deadline) {
			t.Errorf("after Close: %d goroutines running mp's code, want at most the %d before", g, goroutines)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
}
