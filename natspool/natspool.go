// Package natspool runs an mp pool's tasks on worker hosts on other
// machines, through NATS JetStream: the same mp.Map, Imap and Apply calls,
// on a *mp.Pool that NewPool returns.
//
// A submitting process publishes each task to a work-queue stream;
// worker hosts (the same binary, running RunWorker) pull only as many
// tasks as they have free local workers, run each on a
// local pool (so a crash on a host fails only its task, a task past its
// timeout is killed, and so on), heartbeat long tasks, publish the outcome
// to the submitter and wait for its acknowledgement, and only then
// acknowledge the task. A host that dies mid-task has its tasks delivered
// to another host after AckWait; after Retries+1 deliveries the call gets
// ErrWorkersLost. Each task's outcome reaches its call once, even when the
// task ran twice.
//
// StartServer runs an embedded NATS server with JetStream (head mode), for
// a submitting process that is its own broker.
package natspool

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/seam"
)

// The names natspool uses on the server.
const (
	streamName   = "MP_TASKS"
	tasksSubject = "mp.tasks"   // + "." + build + "." + job
	resultsPfx   = "mp.results" // + "." + job
	cancelPfx    = "mp.cancel"  // + "." + job
	servesSubj   = "mp.hosts.serves"
	consumerName = "mp-workers" // + "-" + build
)

// buildTag is the short form of this program's Build in the names of the
// tasks' subjects and consumers: each build has a consumer of its own, so
// that a worker host is never handed a task of another build (of a
// program whose functions may have the same names and other types).
func buildTag() string { return seam.Fingerprint()[:16] }

// consumerFor is the consumer of this build's worker hosts.
func consumerFor() string { return consumerName + "-" + buildTag() }

// subjectFor is the subject of the tasks of job.
func subjectFor(job string) string { return tasksSubject + "." + buildTag() + "." + job }

// Headers of a task message.
const (
	hTask     = "Mp-Task"
	hFunc     = "Mp-Func"
	hItems    = "Mp-Items"
	hDeadline = "Mp-Deadline"
	hTimeout  = "Mp-Timeout"
	hError    = "Mp-Error"
	hBuild    = "Mp-Build"
)

// ErrWorkersLost is matched by the error of a task whose worker hosts were
// lost: it was delivered Retries+1 times, and never acknowledged.
var ErrWorkersLost = errors.New("natspool: the task's workers were lost")

// ErrNoWorker is matched by the error of a task for a function that no
// connected worker host serves, after Options.NoWorkerTimeout.
var ErrNoWorker = errors.New("natspool: no worker host serves the function")

// Options configures NewPool and RunWorker.
type Options struct {
	// URL is the NATS server, as nats.Connect takes it (with a token or
	// user and password in it, if the server wants them).
	URL string
	// CredsFile and NKeySeedFile authenticate to a server that wants a
	// user's credentials or an nkey; TLS, if set, is the client's TLS.
	CredsFile, NKeySeedFile string
	TLS                     *tls.Config

	// Capacity is how many tasks a pool keeps published and not done: its
	// Workers, as calls see it. Zero means 64.
	Capacity int
	// AckWait is how long a task may go unacknowledged (hosts heartbeat
	// long tasks) before it is delivered again. Zero means 30s.
	AckWait time.Duration
	// Retries is how many more times a task whose host was lost is
	// delivered. Zero means 2; -1 means none.
	Retries int
	// NoWorkerTimeout is how long a call waits for a host that serves its
	// function before it fails with ErrNoWorker. Zero means 10s.
	NoWorkerTimeout time.Duration
	// MaxBytes bounds the task stream's storage. Zero means 1 GiB.
	MaxBytes int64
}

func (o Options) capacity() int {
	if o.Capacity > 0 {
		return o.Capacity
	}
	return 64
}

func (o Options) ackWait() time.Duration {
	if o.AckWait > 0 {
		return o.AckWait
	}
	return 30 * time.Second
}

func (o Options) retries() int {
	switch {
	case o.Retries < 0:
		return 0
	case o.Retries == 0:
		return 2
	}
	return o.Retries
}

func (o Options) noWorkerTimeout() time.Duration {
	if o.NoWorkerTimeout > 0 {
		return o.NoWorkerTimeout
	}
	return 10 * time.Second
}

// dial connects to the server.
func (o Options) dial(name string) (*nats.Conn, jetstream.JetStream, error) {
	nopts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	if o.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, nil, fmt.Errorf("natspool: nkey seed: %w", err)
		}
		nopts = append(nopts, opt)
	}
	if o.TLS != nil {
		nopts = append(nopts, nats.Secure(o.TLS))
	}
	nc, err := nats.Connect(o.URL, nopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("natspool: connecting to %s: %w", redact(o.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// redact drops the password of a URL, for errors and logs.
func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "the server"
}

// setUp makes sure of the task stream and the workers' consumer (a pool
// does it; worker hosts may not).
func (o Options) setUp(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	maxBytes := o.MaxBytes
	if maxBytes == 0 {
		maxBytes = 1 << 30
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: streamName, Subjects: []string{tasksSubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, MaxBytes: maxBytes, Storage: jetstream.FileStorage,
	})
	if err == nil {
		_, err = js.CreateOrUpdateConsumer(ctx, streamName, jetstream.ConsumerConfig{
			Durable: consumerFor(), FilterSubject: tasksSubject + "." + buildTag() + ".>",
			AckPolicy: jetstream.AckExplicitPolicy,
			AckWait:   o.ackWait(), MaxDeliver: o.retries() + 1, MaxAckPending: -1,
		})
	}
	if err != nil && s != nil {
		if _, e := js.Consumer(ctx, streamName, consumerName); e == nil {
			// An earlier natspool's consumer, unfiltered: the stream keeps
			// a task for one consumer only, so no other may be added.
			return nil, fmt.Errorf("natspool: setting up JetStream on %s: the stream %s has the consumer %q of an earlier version of natspool, which takes every task: delete it once its worker hosts are gone: %w",
				redact(o.URL), streamName, consumerName, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("natspool: setting up JetStream on %s: %w", redact(o.URL), err)
	}
	return s, nil
}

// NewPool connects to the server and returns a pool whose tasks run on
// the worker hosts connected to it. Every mp call works on it; close it
// with Close or Shutdown as any pool.
//
// popts holds the options of the calls' side (TaskTimeout, MaxQueued,
// Logger, ...), which apply as in a local pool; its zero value is the
// defaults. Those of local workers (Workers, Worker, MaxTasksPerWorker,
// memory limits, Init) are the worker hosts' business (WorkerOptions.Pool)
// and are ignored here: the pool's Workers is opts.Capacity.
//
// NewPool blocks while it connects and sets up the stream; ctx bounds
// that. Its errors name the server, with any secret in its URL redacted.
func NewPool(ctx context.Context, opts Options, popts mp.PoolOptions) (*mp.Pool, error) {
	if ctx == nil {
		return nil, errors.New("natspool: NewPool: nil Context")
	}
	b, err := newBackend(ctx, opts)
	if err != nil {
		return nil, err
	}
	p, err := seam.NewPool(ctx, popts, b)
	if err != nil {
		b.Close()
		return nil, err
	}
	return p.(*mp.Pool), nil
}

// backend is the seam.Backend of a pool on NATS.
type backend struct {
	opts   Options
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	job    string
	subs   []*nats.Subscription
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	tasks  map[uint64]*seam.Batch // published, not done
	seqs   map[uint64]uint64      // stream sequence -> task ID
	served map[string]time.Time   // functions a host said it serves, and when
}

func newBackend(ctx context.Context, opts Options) (*backend, error) {
	nc, js, err := opts.dial("mp pool")
	if err != nil {
		return nil, err
	}
	s, err := opts.setUp(ctx, js)
	if err != nil {
		nc.Close()
		return nil, err
	}
	b := &backend{opts: opts, nc: nc, js: js, stream: s, job: randomID(),
		tasks: make(map[uint64]*seam.Batch), seqs: make(map[uint64]uint64), served: make(map[string]time.Time)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	sub, err := nc.Subscribe(resultsPfx+"."+b.job, b.result)
	if err == nil {
		b.subs = append(b.subs, sub)
		adv := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", streamName, consumerFor())
		sub, err = nc.Subscribe(adv, b.maxDeliveries)
		b.subs = append(b.subs, sub)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("natspool: subscribing: %w", err)
	}
	return b, nil
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (b *backend) Capacity() int { return b.opts.capacity() }

// Run publishes t, once some worker host says it serves t's function.
func (b *backend) Run(t *seam.Batch) {
	b.mu.Lock()
	b.tasks[t.ID] = t // before Run returns: a Cancel that follows finds it
	b.mu.Unlock()
	go func() {
		if err := b.waitServed(t.Func); err != nil {
			b.finish(t.ID, nil, err)
			return
		}
		m := nats.NewMsg(subjectFor(b.job))
		m.Data = t.Args
		m.Header.Set(hTask, strconv.FormatUint(t.ID, 10))
		m.Header.Set(hFunc, t.Func)
		m.Header.Set(hBuild, seam.Fingerprint())
		m.Header.Set(hItems, strconv.Itoa(t.Items))
		if !t.Deadline.IsZero() {
			m.Header.Set(hDeadline, strconv.FormatInt(t.Deadline.UnixNano(), 10))
		}
		if t.Timeout > 0 {
			m.Header.Set(hTimeout, strconv.FormatInt(int64(t.Timeout), 10))
		}
		b.mu.Lock()
		_, running := b.tasks[t.ID]
		b.mu.Unlock()
		if !running { // cancelled while it waited for a host
			return
		}
		ack, err := b.js.PublishMsg(b.ctx, m)
		if err != nil {
			b.finish(t.ID, nil, fmt.Errorf("natspool: publishing a task of %s: %w", t.Func, err))
			return
		}
		b.mu.Lock()
		_, running = b.tasks[t.ID]
		if running {
			b.seqs[ack.Sequence] = t.ID
		}
		b.mu.Unlock()
		if !running { // cancelled (or done) while it was being published
			b.stream.DeleteMsg(b.ctx, ack.Sequence)
		}
	}()
}

// servedFor is how long a host's answer that it serves a function is
// taken as still true.
const servedFor = 2 * time.Second

// waitServed waits until a worker host answers that it serves fn, for at
// most NoWorkerTimeout.
func (b *backend) waitServed(fn string) error {
	b.mu.Lock()
	at, ok := b.served[fn]
	b.mu.Unlock()
	if ok && time.Since(at) < servedFor {
		return nil
	}
	deadline := time.Now().Add(b.opts.noWorkerTimeout())
	for {
		_, err := b.nc.Request(servesSubj+"."+b.job, []byte(seam.Fingerprint()+"\n"+fn), time.Second)
		if err == nil {
			b.mu.Lock()
			b.served[fn] = time.Now()
			b.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			return fmt.Errorf("%w: %q, on %s (waited %v for a worker host of this program's build that has it)", ErrNoWorker, fn, redact(b.opts.URL), b.opts.noWorkerTimeout())
		}
		if errors.Is(err, nats.ErrNoResponders) {
			select {
			case <-time.After(250 * time.Millisecond):
			case <-b.ctx.Done():
			}
		}
	}
}

// finish hands t's outcome to the pool, once.
func (b *backend) finish(id uint64, result []byte, err error) {
	b.mu.Lock()
	t := b.tasks[id]
	delete(b.tasks, id)
	for seq, tid := range b.seqs {
		if tid == id {
			delete(b.seqs, seq)
		}
	}
	b.mu.Unlock()
	if t != nil {
		t.Done(result, err)
	}
}

// result receives a task's outcome from a worker host, and acknowledges
// it: the host then acknowledges the task. A duplicate (the task ran
// twice) is acknowledged and dropped.
func (b *backend) result(m *nats.Msg) {
	id, data, err := parseOutcome(m.Header, m.Data)
	b.finish(id, data, err)
	m.Respond(nil)
}

// parseOutcome reads a task's outcome as a worker host sent it: the
// task's ID, and what RunTask returned there, or the error that says why
// it could not run. The outcome's bytes are decoded by the pool, within
// its bound on what decoding may allocate; an ID that is not a number is
// 0, which no task has.
func parseOutcome(h nats.Header, data []byte) (id uint64, result []byte, err error) {
	id, _ = strconv.ParseUint(h.Get(hTask), 10, 64)
	if e := h.Get(hError); e != "" {
		return id, nil, errors.New(e)
	}
	return id, data, nil
}

// maxDeliveries fails a task delivered Retries+1 times without an
// acknowledgement: its hosts were lost.
func (b *backend) maxDeliveries(m *nats.Msg) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if json.Unmarshal(m.Data, &adv) != nil {
		return
	}
	b.mu.Lock()
	id, ok := b.seqs[adv.StreamSeq]
	b.mu.Unlock()
	if !ok {
		return
	}
	b.stream.DeleteMsg(b.ctx, adv.StreamSeq)
	b.finish(id, nil, fmt.Errorf("%w: %d deliveries to worker hosts, none acknowledged", ErrWorkersLost, adv.Deliveries))
}

// Cancel tells the hosts to stop t, and takes it out of the stream if no
// host has it yet.
func (b *backend) Cancel(t *seam.Batch) {
	b.mu.Lock()
	delete(b.tasks, t.ID)
	var seq uint64
	for s, id := range b.seqs {
		if id == t.ID {
			seq = s
			delete(b.seqs, s)
		}
	}
	b.mu.Unlock()
	if seq != 0 {
		b.stream.DeleteMsg(b.ctx, seq)
	}
	b.nc.Publish(cancelPfx+"."+b.job, []byte(strconv.FormatUint(t.ID, 10)))
}

// Close drops what the pool left in the stream, and disconnects.
func (b *backend) Close() error {
	b.cancel()
	for _, s := range b.subs {
		if s != nil {
			s.Unsubscribe()
		}
	}
	if b.stream != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.stream.Purge(ctx, jetstream.WithPurgeSubject(subjectFor(b.job)))
		cancel()
	}
	b.nc.Close()
	return nil
}

// hostname is this host's name, for logs.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "?"
	}
	return h
}
