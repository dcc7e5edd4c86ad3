//go:build unix

package mp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// family is what descStart starts: a child (sh) and a grandchild (sleep,
// in the worker's process group), and another child that left the group
// with setsid, which is caught while its parent lives.
type family struct {
	Dir     string // where the pids are written, one file each
	Block   bool   // then ignore ctx and sleep, to be killed
	AllocMB int    // then allocate this much first, to pass a memory limit
}

var descStart = mp.Register("test.desc.start", func(ctx context.Context, f family) ([]int, error) {
	child := exec.Command("sh", "-c", "sleep 1000 & echo $! > "+filepath.Join(f.Dir, "grandchild.tmp")+
		" && mv "+filepath.Join(f.Dir, "grandchild.tmp")+" "+filepath.Join(f.Dir, "grandchild")+"; wait")
	if err := child.Start(); err != nil {
		return nil, err
	}
	loner := exec.Command("sleep", "1000")
	loner.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := loner.Start(); err != nil {
		return nil, err
	}
	pids := []int{child.Process.Pid, loner.Process.Pid}
	for i, p := range pids {
		name := []string{"pid.", "loner."}[i] + strconv.Itoa(p)
		if err := os.WriteFile(filepath.Join(f.Dir, name), nil, 0o600); err != nil {
			return nil, err
		}
	}
	if f.AllocMB > 0 {
		b := make([]byte, f.AllocMB<<20)
		for i := range b {
			b[i] = 1
		}
		time.Sleep(10 * time.Second)
		return []int{int(b[len(b)-1])}, nil
	}
	if f.Block {
		time.Sleep(time.Hour) // ignores ctx: its worker must be killed
	}
	return pids, nil
})

// familyPIDs waits until descStart has written every pid into dir, and
// returns them: the child and grandchild in the worker's process group, and
// the one that left it.
func familyPIDs(t *testing.T, dir string) []int {
	group, loner := familyParts(t, dir)
	return append(group, loner)
}

func familyParts(t *testing.T, dir string) (group []int, loner int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pids []int
		loner = 0
		entries, _ := os.ReadDir(dir)
		grandchild := false
		for _, e := range entries {
			if s, ok := strings.CutPrefix(e.Name(), "pid."); ok {
				n, _ := strconv.Atoi(s)
				pids = append(pids, n)
			}
			if s, ok := strings.CutPrefix(e.Name(), "loner."); ok {
				loner, _ = strconv.Atoi(s)
			}
			if e.Name() == "grandchild" {
				b, _ := os.ReadFile(filepath.Join(dir, "grandchild"))
				if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					pids = append(pids, n)
					grandchild = true
				}
			}
		}
		if len(pids) == 2 && grandchild && loner != 0 {
			return pids, loner
		}
		if time.Now().After(deadline) {
			t.Fatalf("descendants not all started: %v, %d", pids, loner)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// allGone waits up to 2s for every pid to be gone (or a zombie).
func allGone(t *testing.T, pids []int, after string) {
	t.Helper()
	start := time.Now()
	for _, pid := range pids {
		for alive(pid) {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("descendant %d still alive 2s after %s", pid, after)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("descendants %v gone %v after %s", pids, time.Since(start), after)
}

func checkAlive(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("descendant %d is not running before the test acts", pid)
		}
	}
}

func TestDescendantsDie(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts mp.PoolOptions
		fam  family
		// act makes the worker go, and checks the call's error.
		act func(t *testing.T, p *mp.Pool, fam family) (pids []int)
	}{
		{
			name: "timeout",
			opts: mp.PoolOptions{Workers: 1, TaskTimeout: 300 * time.Millisecond},
			fam:  family{Block: true},
			act: func(t *testing.T, p *mp.Pool, fam family) []int {
				_, err := mp.Apply(bounded(t, 30*time.Second), p, descStart, fam)
				if !errors.Is(err, mp.ErrTaskTimeout) {
					t.Fatalf("got %v, want ErrTaskTimeout", err)
				}
				return familyPIDs(t, fam.Dir)
			},
		},
		{
			name: "memory limit",
			opts: mp.PoolOptions{Workers: 1, WorkerMemoryLimit: 64 << 20},
			fam:  family{AllocMB: 256},
			act: func(t *testing.T, p *mp.Pool, fam family) []int {
				_, err := mp.Apply(bounded(t, 30*time.Second), p, descStart, fam)
				if !errors.Is(err, mp.ErrMemoryLimit) {
					t.Fatalf("got %v, want ErrMemoryLimit", err)
				}
				return familyPIDs(t, fam.Dir)
			},
		},
		{
			// An item of a chunk that overruns makes its worker exit on its
			// own, which takes its descendants along.
			name: "timeout in a chunk",
			opts: mp.PoolOptions{Workers: 1, TaskTimeout: 300 * time.Millisecond},
			fam:  family{Block: true},
			act: func(t *testing.T, p *mp.Pool, fam family) []int {
				other := family{Dir: t.TempDir()} // the chunk's second item: quick
				_, errs, err := mp.MapAll(bounded(t, 30*time.Second), p, descStart, []family{fam, other}, mp.ChunkSize(2))
				if err != nil || !errors.Is(errAt(errs, 0), mp.ErrTaskTimeout) || errAt(errs, 1) != nil {
					t.Fatalf("got %v, %v; want item 0 to time out, item 1 to succeed", errs, err)
				}
				pids := familyPIDs(t, fam.Dir)
				// The second item's family was started by a worker that lives.
				for _, pid := range familyPIDs(t, other.Dir) {
					t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
				}
				return pids
			},
		},
		{
			name: "close",
			opts: mp.PoolOptions{Workers: 1},
			act: func(t *testing.T, p *mp.Pool, fam family) []int {
				if _, err := mp.Apply(bounded(t, 30*time.Second), p, descStart, fam); err != nil {
					t.Fatal(err)
				}
				pids := familyPIDs(t, fam.Dir)
				checkAlive(t, pids)
				p.Close()
				return pids
			},
		},
		{
			name: "busy close",
			opts: mp.PoolOptions{Workers: 1},
			fam:  family{Block: true},
			act: func(t *testing.T, p *mp.Pool, fam family) []int {
				f := mp.ApplyAsync(bounded(t, 30*time.Second), p, descStart, fam)
				pids := familyPIDs(t, fam.Dir)
				checkAlive(t, pids)
				p.Close()
				if _, err := f.Wait(bounded(t, 10*time.Second)); !errors.Is(err, mp.ErrPoolClosed) {
					t.Errorf("got %v, want ErrPoolClosed", err)
				}
				return pids
			},
		},
		{
			// A worker that dies by itself cannot take along a descendant
			// that left its process group: that one is reparented at once
			// and lost (the package doc says so). The rest of its group is
			// swept by the parent.
			name: "worker exits",
			opts: mp.PoolOptions{Workers: 1},
			act: func(t *testing.T, p *mp.Pool, fam family) []int {
				ctx := bounded(t, 30*time.Second)
				if _, err := mp.Apply(ctx, p, descStart, fam); err != nil {
					t.Fatal(err)
				}
				group, loner := familyParts(t, fam.Dir)
				checkAlive(t, group)
				t.Cleanup(func() { syscall.Kill(loner, syscall.SIGKILL) })
				if _, err := mp.Apply(ctx, p, procExit, 3); err == nil {
					t.Fatal("the worker did not die")
				}
				return group
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, tt.opts)
			fam := tt.fam
			fam.Dir = t.TempDir()
			pids := tt.act(t, p, fam)
			allGone(t, pids, tt.name)
		})
	}
}

// TestHelperDescendantsParent is not a test: it is the parent process that
// TestDescendantsDieWithParent starts and kills. Its pool's worker starts a
// family, and it waits to be killed.
func TestHelperDescendantsParent(t *testing.T) {
	dir := os.Getenv("MP_TEST_FAMILY_DIR")
	if os.Getenv(helperEnv) != "desc-parent" || dir == "" {
		t.Skip("helper process for TestDescendantsDieWithParent")
	}
	ctx := context.Background()
	p, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 1})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if _, err := mp.Apply(ctx, p, descStart, family{Dir: dir}); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

func TestDescendantsDieWithParent(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd, sc := startHelper(t, "TestHelperDescendantsParent", helperEnv+"=desc-parent", "MP_TEST_FAMILY_DIR="+dir)
			for sc.Scan() {
				if line := sc.Text(); line == "ready" {
					break
				} else if strings.HasPrefix(line, "error") {
					t.Fatal(line)
				}
			}
			pids := familyPIDs(t, dir)
			checkAlive(t, pids)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			allGone(t, pids, "the parent got "+sig.String())
		})
	}
}
