// Package worker is the loop a worker process runs: handshake with its
// parent, then run the tasks it is sent, one at a time, until its
// connection closes.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"

	"github.com/go-mp/mp/internal/wire"
)

// Handler runs a registered function on one encoded argument and returns
// its encoded result. A non-nil error is the function's own error (or its
// argument's or result's encoding error).
type Handler func(ctx context.Context, arg []byte) ([]byte, error)

// Config is what the worker loop needs from the package that registers functions.
type Config struct {
	Fingerprint string
	Lookup      func(name string) (Handler, bool)
	Describe    func(error) wire.ErrorInfo // how an error crosses the wire
	OnHello     func(wire.Hello)           // called with the parent's hello before any task
}

// Exit codes of a worker that stops on its own.
const (
	ExitOK        = 0 // the parent closed the connection, or a one-shot task succeeded
	ExitTaskError = 1 // a one-shot task returned an error or panicked
	ExitProtocol  = 3 // the parent spoke another protocol or build
)

type task struct {
	id     uint64
	body   wire.Task
	ctx    context.Context    // set once it runs
	cancel context.CancelFunc // set once it runs
}

type server struct {
	cfg   Config
	conn  net.Conn
	hello wire.Hello // the parent's

	wmu sync.Mutex
	w   *wire.Writer

	mu      sync.Mutex
	queue   []*task
	running *task
	ready   chan struct{} // poked when queue grows
}

// Serve runs the worker loop on conn and returns the process exit code.
func Serve(conn net.Conn, cfg Config) int {
	s := &server{cfg: cfg, conn: conn, ready: make(chan struct{}, 1)}
	s.w = wire.NewWriter(conn, 0)
	me := wire.NewHello(cfg.Fingerprint)
	me.PID = os.Getpid()
	if err := s.w.Write(wire.KindHello, 0, wire.MarshalHello(me)); err != nil {
		return ExitOK // the parent is already gone
	}
	r := wire.NewReader(conn, 0)
	f, err := r.Read()
	if err != nil {
		return ExitOK
	}
	if f.Kind != wire.KindHello {
		fmt.Fprintf(os.Stderr, "mp: worker: expected a hello, got a %v frame\n", f.Kind)
		return ExitProtocol
	}
	if s.hello, err = wire.ParseHello(f.Payload, me); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return ExitProtocol
	}
	s.w.SetMax(s.hello.MaxFrame)
	r.SetMax(s.hello.MaxFrame)
	if cfg.OnHello != nil {
		cfg.OnHello(s.hello)
	}
	go s.read(r)
	return s.run()
}

// read receives frames until the connection ends. EOF means the parent is
// gone or retires this worker; either way the worker must stop, even in the
// middle of a task, so read exits the process itself.
func (s *server) read(r *wire.Reader) {
	for {
		f, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				fmt.Fprintf(os.Stderr, "mp: worker %d: reading from parent: %v\n", os.Getpid(), err)
			}
			os.Exit(ExitOK)
		}
		switch f.Kind {
		case wire.KindTask:
			body, err := wire.ParseTask(f.Payload)
			if err != nil {
				fmt.Fprintf(os.Stderr, "mp: worker %d: %v\n", os.Getpid(), err)
				os.Exit(ExitProtocol)
			}
			s.mu.Lock()
			s.queue = append(s.queue, &task{id: f.ID, body: body})
			s.mu.Unlock()
			select {
			case s.ready <- struct{}{}:
			default:
			}
		case wire.KindCancel:
			s.cancel(f.ID)
		default:
			fmt.Fprintf(os.Stderr, "mp: worker %d: unexpected %v frame\n", os.Getpid(), f.Kind)
			os.Exit(ExitProtocol)
		}
	}
}

// cancel cancels task id if it runs, or revokes it if it is still queued.
func (s *server) cancel(id uint64) {
	s.mu.Lock()
	if s.running != nil && s.running.id == id {
		s.running.cancel()
		s.mu.Unlock()
		return
	}
	for i, t := range s.queue {
		if t.id == id {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.mu.Unlock()
			s.write(wire.KindRevoked, id, nil)
			return
		}
	}
	s.mu.Unlock() // already done: its result is on its way
}

func (s *server) next() *task {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			t := s.queue[0]
			s.queue = s.queue[1:]
			ctx := context.Background()
			if !t.body.Deadline.IsZero() {
				ctx, t.cancel = context.WithDeadline(ctx, t.body.Deadline)
			} else {
				ctx, t.cancel = context.WithCancel(ctx)
			}
			s.running = t
			t.ctx = ctx
			s.mu.Unlock()
			return t
		}
		s.mu.Unlock()
		<-s.ready
	}
}

// run executes tasks in the order they arrived, one at a time.
func (s *server) run() int {
	for {
		t := s.next()
		res := s.execute(t)
		t.cancel()
		s.mu.Lock()
		s.running = nil
		s.mu.Unlock()
		if err := s.write(wire.KindResult, t.id, wire.AppendResult(nil, res)); err != nil {
			fmt.Fprintf(os.Stderr, "mp: worker %d: sending result: %v\n", os.Getpid(), err)
			return ExitOK
		}
		if s.hello.OneShot {
			for _, it := range res.Items {
				if it.Status != wire.StatusOK {
					return ExitTaskError
				}
			}
			return ExitOK
		}
	}
}

func (s *server) write(kind wire.Kind, id uint64, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.w.Write(kind, id, payload)
}

// execute runs every item of t and never panics.
func (s *server) execute(t *task) wire.Result {
	res := wire.Result{Items: make([]wire.Item, len(t.body.Items))}
	h, ok := s.cfg.Lookup(t.body.Func)
	for i, arg := range t.body.Items {
		if !ok {
			res.Items[i] = s.errorItem(fmt.Errorf("mp: function %q is not registered in worker %d", t.body.Func, os.Getpid()))
			continue
		}
		res.Items[i] = s.call(t.ctx, h, arg)
	}
	s.fitLimit(t.body.Func, &res)
	if s.hello.ReportRSS {
		res.RSS = rss()
	}
	return res
}

func (s *server) call(ctx context.Context, h Handler, arg []byte) (it wire.Item) {
	defer func() {
		if v := recover(); v != nil {
			info := wire.PanicInfo{Value: fmt.Sprint(v), Stack: debug.Stack()}
			data, err := wire.MarshalAny(info)
			if err != nil {
				data, _ = wire.MarshalAny(wire.PanicInfo{Value: "unprintable panic value"})
			}
			it = wire.Item{Status: wire.StatusPanic, Data: data}
		}
	}()
	out, err := h(ctx, arg)
	if err != nil {
		return s.errorItem(err)
	}
	return wire.Item{Status: wire.StatusOK, Data: out}
}

func (s *server) errorItem(err error) wire.Item {
	info := wire.ErrorInfo{Type: fmt.Sprintf("%T", err), Msg: err.Error()}
	if s.cfg.Describe != nil {
		info = s.cfg.Describe(err)
	}
	data, merr := wire.MarshalAny(info)
	if merr != nil {
		panic(merr) // ErrorInfo holds strings only
	}
	return wire.Item{Status: wire.StatusError, Data: data}
}

// fitLimit replaces results that would make the frame too large with an
// error that says so, so an oversized result fails its task, not the worker.
func (s *server) fitLimit(fn string, res *wire.Result) {
	limit := s.w.Max()
	size := func() int {
		n := 12
		for _, it := range res.Items {
			n += 5 + len(it.Data)
		}
		return n
	}
	for total := size(); total > limit; total = size() {
		big := 0
		for i, it := range res.Items {
			if len(it.Data) > len(res.Items[big].Data) {
				big = i
			}
		}
		n := len(res.Items[big].Data)
		if n < 256 {
			for i := range res.Items {
				res.Items[i] = s.errorItem(fmt.Errorf("mp: the results of one task of %s total %d bytes, over the %d-byte message limit: use a smaller chunk size or raise WorkerOptions.MaxMessageSize", fn, total, limit))
			}
			return
		}
		res.Items[big] = s.errorItem(&wire.FrameTooLargeError{Size: int64(n), Limit: limit})
	}
}
