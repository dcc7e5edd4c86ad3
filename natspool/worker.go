package natspool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/seam"
)

// WorkerOptions configures RunWorker.
type WorkerOptions struct {
	Options
	// Pool configures the host's local pool: Workers is how many tasks
	// the host runs at once (zero: its CPUs), TaskTimeout, memory limits
	// and the rest apply to its workers as in any pool. (A task's own
	// TaskTimeout, from the submitting pool, wins over Pool.TaskTimeout.)
	Pool mp.PoolOptions
	// DrainTimeout bounds how long RunWorker, once ctx ends, waits for the
	// tasks it runs before it leaves them to be delivered again. Zero
	// means AckWait.
	DrainTimeout time.Duration
}

// RunWorker makes this process a worker host: it runs the tasks of pools
// on the server (NewPool, anywhere) in a local pool of its own, pulling
// only as many as it has free workers, until ctx ends (a SIGTERM, with
// signal.NotifyContext). Then it stops pulling, lets the tasks it runs
// finish (for DrainTimeout at most), and returns nil. The process must be
// the same program as the submitters' (it runs their functions by name),
// and must have called mp.Main.
func RunWorker(ctx context.Context, opts WorkerOptions) error {
	if ctx == nil {
		return errors.New("natspool: RunWorker: nil Context")
	}
	nc, js, err := opts.dial("mp worker host " + hostname())
	if err != nil {
		return err
	}
	defer nc.Close()
	// The first pool of this build makes the stream and the build's
	// consumer: wait for them.
	var cons jetstream.Consumer
	for {
		cons, err = js.Consumer(ctx, streamName, consumerFor())
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("natspool: the workers' consumer on %s: %w", redact(opts.URL), err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
	pool, err := mp.NewPool(ctx, opts.Pool)
	if err != nil {
		return err
	}
	defer pool.Close()
	slots := pool.Workers()

	h := &host{nc: nc, pool: pool, ackWait: opts.ackWait(), running: make(map[string]context.CancelFunc)}
	serves, err := nc.Subscribe(servesSubj+".*", func(m *nats.Msg) {
		build, fn, _ := strings.Cut(string(m.Data), "\n")
		if build == seam.Fingerprint() && seam.Registered(fn) {
			m.Respond(nil)
		}
	})
	if err != nil {
		return fmt.Errorf("natspool: subscribing: %w", err)
	}
	defer serves.Unsubscribe()
	cancels, err := nc.Subscribe(cancelPfx+".*", func(m *nats.Msg) {
		job := strings.TrimPrefix(m.Subject, cancelPfx+".")
		h.cancel(job + "/" + string(m.Data))
	})
	if err != nil {
		return fmt.Errorf("natspool: subscribing: %w", err)
	}
	defer cancels.Unsubscribe()

	free := make(chan struct{}, slots)
	for range slots {
		free <- struct{}{}
	}
	var wg sync.WaitGroup
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	for ctx.Err() == nil {
		n := 0
		select { // one free worker at least, then as many as are free
		case <-free:
			n = 1
		case <-ctx.Done():
			continue
		}
		for more := true; more; {
			select {
			case <-free:
				n++
			default:
				more = false
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(time.Second))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { free <- struct{}{} }()
					h.run(work, msg)
				}()
			}
		}
		for range n - got {
			free <- struct{}{}
		}
		if err != nil && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond) // the server is away: try again
		}
	}
	drain := opts.DrainTimeout
	if drain == 0 {
		drain = opts.ackWait()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		stopWork() // left to be delivered again
		<-done
	}
	return nil
}

// host is a worker host's state: the tasks it runs, to cancel them.
type host struct {
	nc      *nats.Conn
	pool    *mp.Pool
	ackWait time.Duration

	mu      sync.Mutex
	running map[string]context.CancelFunc // by job/task
}

func (h *host) cancel(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.running[key]; c != nil {
		c()
	}
}

// run runs one task and hands its outcome to its submitter, then
// acknowledges it.
func (h *host) run(work context.Context, msg jetstream.Msg) {
	hd := msg.Headers()
	if hd.Get(hBuild) != seam.Fingerprint() {
		// Another program's (or build's) task, which its consumer should
		// never have handed here (the subject has the build in it): its
		// functions may have the same names and other types. Leave it
		// for a host of its build.
		msg.NakWithDelay(time.Second)
		return
	}
	job := strings.TrimPrefix(msg.Subject(), subjectFor(""))
	id := hd.Get(hTask)
	th := parseTaskHeaders(hd)

	ctx, cancel := context.WithCancel(work)
	defer cancel()
	key := job + "/" + id
	h.mu.Lock()
	h.running[key] = cancel
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.running, key)
		h.mu.Unlock()
	}()
	// Heartbeat: a long task is not delivered again while it runs here.
	beat := time.NewTicker(max(h.ackWait/3, 10*time.Millisecond))
	defer beat.Stop()
	go func() {
		for {
			select {
			case <-beat.C:
				msg.InProgress()
			case <-ctx.Done():
				return
			}
		}
	}()

	attempt := 0
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered) - 1
	}
	out, err := seam.RunBatch(ctx, h.pool, &seam.Batch{ID: th.ref, Func: th.fn, Items: th.items, Args: msg.Data(),
		Attempt: attempt, Deadline: th.deadline, Timeout: th.timeout})
	if work.Err() != nil { // the host stops: another host is to run it
		msg.Nak()
		return
	}
	reply := nats.NewMsg(resultsPfx + "." + job)
	reply.Data = out
	reply.Header.Set(hTask, id)
	if err != nil {
		reply.Header.Set(hError, err.Error())
	}
	// The outcome first, acknowledged by the submitter; then the task.
	if _, err := h.nc.RequestMsg(reply, 10*time.Second); err != nil && !errors.Is(err, nats.ErrNoResponders) {
		msg.Nak() // the submitter did not take it: deliver the task again
		return
	}
	msg.Ack()
}

// taskHeaders are the headers of a task message, as a worker host reads
// them.
type taskHeaders struct {
	ref      uint64
	fn       string
	items    int
	deadline time.Time
	timeout  time.Duration
}

// parseTaskHeaders reads a task's headers. A header that is missing or not
// a number reads as zero: no deadline, no timeout, and zero items, which
// RunTask refuses.
func parseTaskHeaders(hd nats.Header) taskHeaders {
	th := taskHeaders{fn: hd.Get(hFunc)}
	th.ref, _ = strconv.ParseUint(hd.Get(hTask), 10, 64)
	th.items, _ = strconv.Atoi(hd.Get(hItems))
	if d, err := strconv.ParseInt(hd.Get(hDeadline), 10, 64); err == nil {
		th.deadline = time.Unix(0, d)
	}
	if t, err := strconv.ParseInt(hd.Get(hTimeout), 10, 64); err == nil && t > 0 {
		th.timeout = time.Duration(t)
	}
	return th
}
