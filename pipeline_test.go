package mp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

var pipeEcho = mp.Register("test.pipe.echo", func(ctx context.Context, b []byte) ([]byte, error) { return b, nil })

func TestBigFramesBothWaysNoDeadlock(t *testing.T) {
	// Large tasks and results both ways, and revokes from a cancelled call:
	// a reader that wrote while its worker waited to write hung the pool.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 120*time.Second)
	in := make([][]byte, 40)
	for i := range in {
		in[i] = make([]byte, 300<<10)
	}
	for iter := range 30 {
		var wg sync.WaitGroup
		cctx, cancel := context.WithCancel(ctx)
		wg.Go(func() { mp.MapAll(cctx, p, pipeEcho, in, mp.ChunkSize(1)) })
		wg.Go(func() {
			if _, err := mp.Map(ctx, p, pipeEcho, in, mp.ChunkSize(1)); err != nil {
				t.Errorf("iteration %d: %v", iter, err)
			}
		})
		time.AfterFunc(time.Duration(rand.IntN(4000))*time.Microsecond, cancel)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("iteration %d hung; stats %+v", iter, p.Stats())
		}
		cancel()
	}
}

// pipeDieIdle leaves a process outside the worker's group holding the
// worker's stderr (so that the worker's end is slow to be reaped), and has
// the worker die, idle, shortly after it returns.
var pipeDieIdle = mp.Register("test.pipe.die-idle", func(ctx context.Context, d time.Duration) (int, error) {
	cmd := exec.Command("sleep", "3")
	cmd.Stderr = os.Stderr
	newSession(cmd)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() { time.Sleep(d); os.Exit(7) }()
	return os.Getpid(), nil
})

func TestIdleDeathBlamesNoNewTask(t *testing.T) {
	// A worker that died idle counted as ready until it was reaped: a task
	// sent to it meanwhile failed for its death.
	t.Parallel()
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 30*time.Second)
	pid, err := mp.Apply(ctx, p, pipeDieIdle, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until it is dead and its descriptors closed: a zombie whose
	// other threads are gone too. (Its stderr stays open in the sleep, so
	// it is not reaped for a while.)
	for alive(pid) || threads(pid) > 1 {
		if ctx.Err() != nil {
			t.Fatal("the worker did not die")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := mp.Apply(ctx, p, poolSquare, 3); err != nil {
		t.Errorf("an Apply made after the worker died idle: %v", err)
	}
}

// threads returns how many threads process pid has left.
func threads(pid int) int {
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return len(entries)
}
