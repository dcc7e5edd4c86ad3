package mp_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-mp/mp"
)

// TestConcurrentCallsAndClose runs many calls of every kind at once, some
// cancelled, some with crashing items, closes the pool in the middle of
// them, and checks that every call returns, with a right result or one of
// the errors it may have.
func TestConcurrentCallsAndClose(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{2, 16} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) { concurrentCallsAndClose(t, workers) })
	}
}

func concurrentCallsAndClose(t *testing.T, workers int) {
	p := newPool(t, mp.PoolOptions{Workers: workers, TaskTimeout: 2 * time.Second})
	ctx := bounded(t, 60*time.Second)
	allowed := func(err error) bool {
		return errors.Is(err, mp.ErrPoolClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	for g := range 10 {
		wg.Go(func() {
			for round := 0; ; round++ {
				cctx, cancel := context.WithCancel(ctx)
				if (g+round)%3 == 0 {
					time.AfterFunc(time.Duration(round%5)*time.Millisecond, cancel)
				}
				var err error
				switch g % 5 {
				case 0:
					var got []int
					got, err = mp.Map(cctx, p, poolSquare, seq(200), mp.ChunkSize(7))
					if err == nil && (len(got) != 200 || got[199] != 199*199) {
						report(errors.New("Map: wrong result"))
					}
				case 1:
					n := 0
					for v, e := range mp.Imap(cctx, p, poolSquare, slices.Values(seq(50))) {
						if e != nil {
							err = e
							break
						}
						if v != n*n {
							report(errors.New("Imap: wrong result"))
						}
						if n++; n == 30 {
							break // leave early
						}
					}
				case 2:
					var v int
					v, err = mp.Apply(cctx, p, poolSquare, round)
					if err == nil && v != round*round {
						report(errors.New("Apply: wrong result"))
					}
				case 4:
					// Many ApplyAsync calls on one ctx, which may end.
					var futures []*mp.Future[int]
					for i := range 20 {
						futures = append(futures, mp.ApplyAsync(cctx, p, poolSquare, i))
					}
					for i, f := range futures {
						v, e := f.Wait(ctx)
						if e == nil && v != i*i {
							report(errors.New("ApplyAsync: wrong result"))
						}
						if e != nil && err == nil {
							err = e
						}
					}
				case 3:
					// Items 49, 99, ... kill their workers.
					_, errs, e := mp.MapAll(cctx, p, poolCrash, seq(100), mp.ChunkSize(10))
					err = e
					for i, ie := range errs {
						if ie != nil && i%50 != 49 && !allowed(ie) {
							report(ie)
						}
					}
				}
				cancel()
				if err != nil && !allowed(err) {
					report(err)
				}
				if errors.Is(err, mp.ErrPoolClosed) {
					return
				}
			}
		})
	}
	// Close once the calls have interleaved: many items done, workers died.
	deadline := time.Now().Add(30 * time.Second)
	for st := p.Stats(); st.TasksDone < 5000 || st.Restarts < 4; st = p.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("calls made no progress: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("calls still running 30s after Close")
	}
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
