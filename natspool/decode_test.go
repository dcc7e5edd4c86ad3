package natspool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/seam"
	"github.com/go-mp/mp/internal/wire"
)

// The decoders of bytes a NATS peer sends: the headers of a task (read by
// a worker host) and a task's outcome (read by the submitting pool).

func FuzzTaskHeaders(f *testing.F) {
	f.Add("1", "f", "3", "1700000000000000000", "1000000")
	f.Add("", "", "", "", "")
	f.Add("x", "\x00", "-5", "-1", "-1")
	f.Add("18446744073709551616", "f", "99999999999999999999", "9223372036854775807", "9223372036854775808")
	f.Fuzz(func(t *testing.T, task, fn, items, deadline, timeout string) {
		hd := nats.Header{}
		hd.Set(hTask, task)
		hd.Set(hFunc, fn)
		hd.Set(hItems, items)
		hd.Set(hDeadline, deadline)
		hd.Set(hTimeout, timeout)
		th := parseTaskHeaders(hd)
		if th.timeout < 0 {
			t.Fatalf("got timeout %v, want >= 0", th.timeout)
		}
		if th.fn != hd.Get(hFunc) {
			t.Fatalf("got func %q, want %q", th.fn, hd.Get(hFunc))
		}
		if n, err := strconv.Atoi(items); err == nil && th.items != n {
			t.Fatalf("got %d items, want %d", th.items, n)
		}
	})
}

// outcomeFn is the function of the tasks FuzzOutcome's pool submits; it
// never runs (the pool's backend answers for it).
var outcomeFn = mp.Register("natspool.test.outcome", func(ctx context.Context, x int) (any, error) { return x, nil })

// replay is a backend that answers every task with the outcome it holds.
type replay struct {
	mu      sync.Mutex
	outcome []byte
	err     error
}

func (r *replay) Capacity() int { return 1 }
func (r *replay) Run(t *seam.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	go t.Done(r.outcome, r.err)
}
func (r *replay) Cancel(t *seam.Batch) {}
func (r *replay) Close() error         { return nil }

// outcome is the outcome RunBatch returns for one item whose value is
// values, encoded.
func outcome(values []byte) []byte {
	return append(append([]byte{'R'}, wire.AppendResultHeader(nil, wire.Result{N: 1})...), values...)
}

// emptyMaps is an array of n empty maps: n bytes that decode, into an
// any, to tens of times that.
func emptyMaps(n int) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0x9a}, uint32(n)), bytes.Repeat([]byte{0xa0}, n)...)
}

func heapGrowth(f func()) int64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// FuzzOutcome feeds arbitrary outcomes, as a worker host's reply carries
// them, to a pool: each gives a value or an error, and decoding never
// allocates more than 8 times the outcome's size (plus 16 KiB, and what
// a call costs).
func FuzzOutcome(f *testing.F) {
	f.Add("1", "", outcome([]byte{0x01}))
	f.Add("1", "", outcome(emptyMaps(1000)))
	f.Add("2", "it failed", []byte{})
	f.Add("x", "", []byte("R"))
	f.Add("3", "", outcome([]byte{0xc3, 0x41, 0xff}))
	r := &replay{}
	pp, err := seam.NewPool(context.Background(), mp.PoolOptions{}, r)
	if err != nil {
		f.Fatal(err)
	}
	p := pp.(*mp.Pool)
	defer p.Close()
	f.Fuzz(func(t *testing.T, task, errText string, data []byte) {
		hd := nats.Header{}
		hd.Set(hTask, task)
		hd.Set(hError, errText)
		_, result, err := parseOutcome(hd, data)
		if (err != nil) != (hd.Get(hError) != "") {
			t.Fatalf("got error %v for error header %q", err, hd.Get(hError))
		}
		r.mu.Lock()
		r.outcome, r.err = result, err
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var v any
		got := heapGrowth(func() { v, err = mp.Apply(ctx, p, outcomeFn, 1) })
		runtime.KeepAlive(v)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Apply: %v", err)
		}
		if limit := 8*int64(len(data)) + 16<<10 + 16<<10; got > limit {
			t.Fatalf("an outcome of %d bytes allocated %d, want at most %d (err %v)", len(data), got, limit, err)
		}
	})
}

// TestOutcomeDecodeBounded sends outcomes of 1 and 8 MiB of empty maps:
// each is refused with mp.ErrMessageTooLarge, having cost at most 8 times
// its size.
func TestOutcomeDecodeBounded(t *testing.T) {
	r := &replay{}
	pp, err := seam.NewPool(t.Context(), mp.PoolOptions{}, r)
	if err != nil {
		t.Fatal(err)
	}
	p := pp.(*mp.Pool)
	defer p.Close()
	for _, size := range []int{1 << 20, 8 << 20} {
		hd := nats.Header{}
		hd.Set(hTask, "1")
		_, result, err := parseOutcome(hd, outcome(emptyMaps(size)))
		if err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		r.outcome = result
		r.mu.Unlock()
		var v any
		runtime.GC()
		got := heapGrowth(func() { v, err = mp.Apply(t.Context(), p, outcomeFn, 1) })
		runtime.KeepAlive(v)
		if !errors.Is(err, mp.ErrMessageTooLarge) {
			t.Errorf("%d bytes: got %v, want an error matching mp.ErrMessageTooLarge", size, err)
		}
		if limit := 8*int64(size) + 32<<10; got > limit {
			t.Errorf("%d bytes: allocated %d (%.1f times), want at most %d", size, got, float64(got)/float64(size), limit)
		}
	}
}
