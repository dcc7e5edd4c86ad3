package mp

import (
	"context"
	"sync"

	"github.com/go-mp/mp/internal/wire"
)

// The warm spare of Spawn (WorkerOptions.KeepSpare): one worker process
// started ahead of time, its handshake half done (its hello read and
// checked), waiting for our hello and its task. Like the threads that start
// workers, it belongs to the process, not to a call: it is the one piece of
// mutable state besides the registry, and it is owned here alone.
var spare struct {
	mu       sync.Mutex
	ready    *workerConn // nil if none is ready
	starting bool
}

// spareable reports whether o asks for the spare and is what it is started
// with: only the options that shape the process matter, the others are
// sent in the hello when the spare is taken.
func (o WorkerOptions) spareable() bool {
	return o.KeepSpare && o.Env == nil && o.Dir == "" && o.Stdout == nil && o.Stderr == nil && o.WaitDelay == 0
}

// takeSpare returns the spare if one is ready and alive, or nil.
func takeSpare() *workerConn {
	spare.mu.Lock()
	wc := spare.ready
	spare.ready = nil
	spare.mu.Unlock()
	if wc == nil {
		return nil
	}
	select {
	case <-wc.child.Done(): // it died idle: someone killed it
		wc.close()
		return nil
	default:
		return wc
	}
}

// warmUp is what a spare runs while it waits to be taken: the path of
// every task, so that its first real one is not slowed by its first use.
var warmUp = Register("mp.warm-up", func(ctx context.Context, x int) (int, error) { return x + 1, nil })

// refillSpare starts a spare in the background, unless one is ready or
// starting. A spare that fails to start is dropped: the next Spawn starts
// its process itself, and reports what goes wrong.
func refillSpare(fingerprint string, o WorkerOptions) {
	spare.mu.Lock()
	if spare.ready != nil || spare.starting {
		spare.mu.Unlock()
		return
	}
	spare.starting = true
	spare.mu.Unlock()
	go func() {
		hello := wire.NewHello(fingerprint)
		hello.Name = "Process"
		wc, err := startProcess(o, hello, true)
		if err == nil {
			err = wc.handshake(o.startTimeout())
		}
		spare.mu.Lock()
		spare.starting = false
		if err == nil {
			spare.ready = wc
		}
		spare.mu.Unlock()
	}()
}
