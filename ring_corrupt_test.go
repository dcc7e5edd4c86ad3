package mp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// Shared memory is untrusted input (issue 18): a ring overwritten with
// anything gives an error naming it, never a panic or an access out of
// its bounds.

// corruptQueue makes a Queue of a 4 KiB ring holding two messages.
func corruptQueue(t *testing.T) *Queue[[]byte] {
	t.Helper()
	q, err := NewQueue[[]byte](QueueOptions{BufferSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.object.Close() })
	for _, v := range [][]byte{[]byte("first message"), []byte("second")} {
		if err := q.Put(t.Context(), v); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

func TestRingCorruptRecord(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name    string
		corrupt func(q *Queue[[]byte])
	}{
		{"length past the ring", func(q *Queue[[]byte]) { le.PutUint32(q.r.data[0:], 0xfffffff0) }},
		{"length past what was published", func(q *Queue[[]byte]) { le.PutUint32(q.r.data[0:], 200) }},
		{"unknown flags", func(q *Queue[[]byte]) { le.PutUint32(q.r.data[4:], 0x80|recFirst|recLast) }},
		{"an abort with a payload", func(q *Queue[[]byte]) { le.PutUint32(q.r.data[4:], recAbort) }},
		{"head not on a record", func(q *Queue[[]byte]) { le.PutUint64(q.r.hdr[rHead:], 4095) }},
		{"head past the tail", func(q *Queue[[]byte]) { le.PutUint64(q.r.hdr[rHead:], 1<<40) }},
		{"tail a ring ahead", func(q *Queue[[]byte]) {
			le.PutUint64(q.r.hdr[rTail:], 8192)
			le.PutUint64(q.r.hdr[rTailSeen:], 8192)
		}},
		{"tail not on a record", func(q *Queue[[]byte]) {
			le.PutUint64(q.r.hdr[rTail:], 7)
			le.PutUint64(q.r.hdr[rTailSeen:], 7)
		}},
		{"message over its limit", func(q *Queue[[]byte]) { le.PutUint32(q.r.hdr[rMaxMessage:], 4) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := corruptQueue(t)
			tt.corrupt(q)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			v, err := q.Get(ctx)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get: got %q, %v; want an error matching ErrCorrupt", v, err)
			}
			ce, ok := errors.AsType[*CorruptError](err)
			if !ok || ce.Object != "Queue" || ce.PID != int(myPID) {
				t.Errorf("got %#v, want a *CorruptError naming the Queue and process %d", ce, myPID)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "mp: Queue") || !strings.Contains(msg, fmt.Sprint(myPID)) {
				t.Errorf("got %q, want it to name the Queue and the process that wrote it", msg)
			}
			if _, err := q.Get(ctx); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Get: got %v, want ErrCorrupt again", err)
			}
		})
	}
}

func TestRingCorruptPut(t *testing.T) {
	le := binary.LittleEndian
	for _, tt := range []struct {
		name    string
		corrupt func(q *Queue[[]byte])
	}{
		{"tail not on a record", func(q *Queue[[]byte]) { le.PutUint64(q.r.hdr[rTail:], 4095) }},
		{"head ahead of the tail", func(q *Queue[[]byte]) { le.PutUint64(q.r.hdr[rHeadSeen:], 1<<50) }},
		{"tail a ring ahead of the head", func(q *Queue[[]byte]) { le.PutUint64(q.r.hdr[rTail:], 1<<20) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := corruptQueue(t)
			tt.corrupt(q)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if err := q.Put(ctx, []byte("third")); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Put: got %v, want an error matching ErrCorrupt", err)
			}
		})
	}
}

// TestRingRandomBytes overwrites a Queue's header, or its records, with
// random bytes, and uses it: every call returns (an error, for the
// records), none panics.
func TestRingRandomBytes(t *testing.T) {
	for _, part := range []string{"header", "records"} {
		t.Run(part, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(1, uint64(len(part))))
			for i := range 200 {
				q := corruptQueue(t)
				b := q.r.hdr
				if part == "records" {
					b = q.r.data[:64]
				}
				for j := range b {
					b[j] = byte(rnd.Uint32())
				}
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
				_, err := q.Get(ctx)
				if part == "records" && !errors.Is(err, ErrCorrupt) {
					t.Errorf("run %d: Get: got %v, want ErrCorrupt", i, err)
				}
				if part == "header" && err == nil {
					t.Errorf("run %d: Get of a random header succeeded", i)
				}
				q.TryGet()
				q.Put(ctx, []byte("more"))
				q.TryPut([]byte("more"))
				q.Len()
				q.TaskDone()
				cancel()
				q.object.Close()
			}
		})
	}
}

// TestPipeCorrupt: a Pipe end's Recv reports its corrupt ring.
func TestPipeCorrupt(t *testing.T) {
	a, b, err := Pipe[string]()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	if err := a.Send(context.Background(), "hello"); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b.recv.data[0:], 1<<30)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	v, err := b.Recv(ctx)
	if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "mp: Pipe") {
		t.Fatalf("Recv: got %q, %v; want an error naming the Pipe, matching ErrCorrupt", v, err)
	}
}

// ringScribbler puts a value in the Queue it is passed, then writes over
// the record's length, as a stray write in cgo code might: it returns its
// pid.
var ringScribbler = Register("test.ring.scribble", func(ctx context.Context, q *Queue[string]) (int, error) {
	if err := q.Put(ctx, "hello"); err != nil {
		return 0, err
	}
	binary.LittleEndian.PutUint32(q.r.data[0:], 1<<31)
	return os.Getpid(), nil
})

// TestQueueCorruptedByWorker: the error names the process that wrote the
// corrupt record.
func TestQueueCorruptedByWorker(t *testing.T) {
	t.Parallel()
	q, err := NewQueue[string](QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.object.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := Spawn(ctx, ringScribbler, q, WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := q.Get(ctx)
	ce, ok := errors.AsType[*CorruptError](err)
	if !ok || ce.PID != pid || !strings.Contains(err.Error(), fmt.Sprintf("process %d", pid)) {
		t.Fatalf("Get: got %q, %v; want a *CorruptError naming process %d", v, err, pid)
	}
}
