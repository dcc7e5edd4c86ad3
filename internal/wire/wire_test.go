package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/big"
	"net"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// header returns a frame header whose length field is length (the size of
// what follows the length field: kind, ID and payload).
func header(length uint32, kind Kind, id uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, byte(kind))
	return binary.BigEndian.AppendUint64(b, id)
}

// encodeFrame returns the bytes a Writer sends for one frame.
func encodeFrame(t testing.TB, kind Kind, id uint64, parts ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := NewWriter(&buf, 0).Write(kind, id, parts...); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// testFrame is a frame as it is written: its payload in parts.
type testFrame struct {
	name  string
	kind  Kind
	id    uint64
	parts [][]byte
}

func (f testFrame) payload() []byte { return bytes.Join(f.parts, nil) }

func roundTripFrames() []testFrame {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: several socket buffers
	return []testFrame{
		{name: "hello", kind: KindHello, id: 0, parts: [][]byte{MarshalHello(NewHello("fp"))}},
		{name: "task one part", kind: KindTask, id: 1, parts: [][]byte{[]byte("arguments")}},
		{name: "no parts", kind: KindCancel, id: 2},
		{name: "empty parts", kind: KindRevoked, id: 3, parts: [][]byte{nil, {}, nil}},
		{name: "split payload", kind: KindResult, id: 4, parts: [][]byte{[]byte("he"), nil, []byte("ad"), {}, []byte("er+values")}},
		{name: "max id", kind: KindTask, id: math.MaxUint64, parts: [][]byte{{0}}},
		{name: "unknown kind", kind: Kind(200), id: 5, parts: [][]byte{[]byte("x")}},
		{name: "large split payload", kind: KindTask, id: 6, parts: [][]byte{big[:3], big[3 : 1<<19], big[1<<19:]}},
	}
}

// transport is a connection to run frames through: write on w, read on r.
type transport struct {
	name     string
	open     func(t *testing.T) (w io.WriteCloser, r io.Reader)
	buffered bool // written in full before it is read
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

var transports = []transport{
	{name: "bytes.Buffer", open: func(t *testing.T) (io.WriteCloser, io.Reader) {
		var b bytes.Buffer
		return nopCloser{&b}, &b
	}, buffered: true},
	{name: "net.Pipe", open: func(t *testing.T) (io.WriteCloser, io.Reader) {
		c1, c2 := net.Pipe()
		t.Cleanup(func() { c1.Close(); c2.Close() })
		return c1, c2
	}},
	{name: "unix socket", open: func(t *testing.T) (io.WriteCloser, io.Reader) {
		// A *net.UnixConn takes the vectored (writev) path of net.Buffers,
		// as the socketpair to a real worker does.
		l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		if err != nil {
			t.Skipf("unix sockets: %v", err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			accepted <- c
		}()
		c1, err := net.Dial("unix", l.Addr().String())
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		c2 := <-accepted
		if c2 == nil {
			t.Fatal("Accept failed")
		}
		t.Cleanup(func() { c1.Close(); c2.Close() })
		return c1, c2
	}},
}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	frames := roundTripFrames()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			w, r := tr.open(t)
			written := make(chan error, 1)
			go func() {
				fw := NewWriter(w, 2<<20)
				for _, f := range frames {
					if err := fw.Write(f.kind, f.id, f.parts...); err != nil {
						written <- err
						return
					}
				}
				written <- w.Close()
			}()
			if tr.buffered {
				if err := <-written; err != nil {
					t.Fatalf("writing: got %v, want nil", err)
				}
				written <- nil
			}
			fr := NewReader(r, 2<<20)
			for _, want := range frames {
				got, err := fr.Read()
				if err != nil {
					t.Fatalf("%s: Read: got %v, want nil", want.name, err)
				}
				if got.Kind != want.kind || got.ID != want.id {
					t.Errorf("%s: got kind %v id %d, want kind %v id %d", want.name, got.Kind, got.ID, want.kind, want.id)
				}
				if !bytes.Equal(got.Payload, want.payload()) {
					t.Errorf("%s: got payload of %d bytes, want %d bytes", want.name, len(got.Payload), len(want.payload()))
				}
			}
			if _, err := fr.Read(); err != io.EOF {
				t.Errorf("Read after the last frame: got %v, want %v", err, io.EOF)
			}
			if err := <-written; err != nil {
				t.Errorf("writing: got %v, want nil", err)
			}
		})
	}
}

// TestFrameEncoding pins the byte layout, which is part of the protocol.
func TestFrameEncoding(t *testing.T) {
	t.Parallel()
	got := encodeFrame(t, KindTask, 0x0102030405060708, []byte("ab"), []byte("c"))
	want := []byte{0, 0, 0, 12, 2, 1, 2, 3, 4, 5, 6, 7, 8, 'a', 'b', 'c'}
	if !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
}

func TestWriterReusesNoCallerMemory(t *testing.T) {
	t.Parallel()
	// The Writer keeps its parts in a reused net.Buffers: a second frame
	// must not carry anything of the first.
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	if err := w.Write(KindTask, 1, []byte("first"), []byte("frame")); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(KindTask, 2, []byte("x")); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf, 0)
	for _, want := range []string{"firstframe", "x"} {
		f, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if string(f.Payload) != want {
			t.Errorf("got %q, want %q", f.Payload, want)
		}
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestWriterReturnsWriteError(t *testing.T) {
	t.Parallel()
	err := NewWriter(failingWriter{net.ErrClosed}, 0).Write(KindTask, 1, []byte("x"))
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("got %v, want %v", err, net.ErrClosed)
	}
}

func TestReaderLimit(t *testing.T) {
	t.Parallel()
	const max = 100
	tests := []struct {
		name    string
		length  uint32 // the header's length field
		tooLong bool
	}{
		{name: "empty payload", length: HeaderSize - 4},
		{name: "at the limit", length: HeaderSize - 4 + max},
		{name: "one over the limit", length: HeaderSize - 4 + max + 1, tooLong: true},
		{name: "largest length field", length: math.MaxUint32, tooLong: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			size := int64(tt.length) - (HeaderSize - 4)
			in := header(tt.length, KindTask, 9)
			if !tt.tooLong {
				in = append(in, make([]byte, size)...)
			}
			f, err := NewReader(bytes.NewReader(in), max).Read()
			if !tt.tooLong {
				if err != nil || int64(len(f.Payload)) != size {
					t.Errorf("got %d bytes, %v; want %d bytes, nil", len(f.Payload), err, size)
				}
				return
			}
			tooLarge, ok := errors.AsType[*FrameTooLargeError](err)
			if !ok {
				t.Fatalf("got %v, want a *FrameTooLargeError", err)
			}
			if got := (FrameTooLargeError{Size: size, Limit: max}); *tooLarge != got {
				t.Errorf("got %+v, want %+v", *tooLarge, got)
			}
		})
	}
}

func TestReaderSetMax(t *testing.T) {
	t.Parallel()
	in := encodeFrame(t, KindTask, 1, make([]byte, 50))
	in = append(in, encodeFrame(t, KindTask, 2, make([]byte, 50))...)
	r := NewReader(bytes.NewReader(in), 100)
	if _, err := r.Read(); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	r.SetMax(0) // ignored
	r.SetMax(49)
	_, err := r.Read()
	if _, ok := errors.AsType[*FrameTooLargeError](err); !ok {
		t.Errorf("got %v, want a *FrameTooLargeError", err)
	}
}

// TestReaderHugeHeaderDoesNotAllocate checks that a header claiming 4 GiB
// is refused before anything of that size is allocated. It does not run in
// parallel, so that the allocation counts are its own.
func TestReaderHugeHeaderDoesNotAllocate(t *testing.T) {
	const max = 1 << 20
	hdr := header(math.MaxUint32, KindResult, 1)
	src := bytes.NewReader(hdr)
	r := NewReader(src, max)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.Read()
	runtime.ReadMemStats(&after)

	tooLarge, ok := errors.AsType[*FrameTooLargeError](err)
	if !ok {
		t.Fatalf("got %v, want a *FrameTooLargeError", err)
	}
	if tooLarge.Limit != max {
		t.Errorf("got Limit %d, want %d", tooLarge.Limit, max)
	}
	if want := int64(math.MaxUint32 - (HeaderSize - 4)); tooLarge.Size != want {
		t.Errorf("got Size %d, want %d", tooLarge.Size, want)
	}
	if msg := err.Error(); !strings.Contains(msg, strconv.Itoa(max)) {
		t.Errorf("got %q, want it to name the limit %d", msg, max)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > max {
		t.Errorf("got %d bytes allocated, want at most %d", got, max)
	}

	allocs := testing.AllocsPerRun(20, func() {
		src.Reset(hdr)
		_, err = r.Read()
	})
	if _, ok := errors.AsType[*FrameTooLargeError](err); !ok {
		t.Fatalf("got %v, want a *FrameTooLargeError", err)
	}
	if allocs > 1 { // the error itself
		t.Errorf("got %v allocations per Read, want at most 1", allocs)
	}
}

func TestWriterLimit(t *testing.T) {
	t.Parallel()
	const max = 10
	tests := []struct {
		name    string
		parts   [][]byte
		tooLong bool
	}{
		{name: "at the limit", parts: [][]byte{make([]byte, 4), make([]byte, 6)}},
		{name: "one part over", parts: [][]byte{make([]byte, 11)}, tooLong: true},
		{name: "parts over together", parts: [][]byte{make([]byte, 6), nil, make([]byte, 6)}, tooLong: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			w := NewWriter(&buf, max)
			err := w.Write(KindResult, 7, tt.parts...)
			size := len(bytes.Join(tt.parts, nil))
			if !tt.tooLong {
				if err != nil || buf.Len() != HeaderSize+size {
					t.Errorf("got %d bytes written, %v; want %d, nil", buf.Len(), err, HeaderSize+size)
				}
				return
			}
			tooLarge, ok := errors.AsType[*FrameTooLargeError](err)
			if !ok {
				t.Fatalf("got %v, want a *FrameTooLargeError", err)
			}
			if got := (FrameTooLargeError{Size: int64(size), Limit: max}); *tooLarge != got {
				t.Errorf("got %+v, want %+v", *tooLarge, got)
			}
			if buf.Len() != 0 {
				t.Errorf("got %d bytes written, want 0", buf.Len())
			}
		})
	}
}

func TestWriterMax(t *testing.T) {
	t.Parallel()
	w := NewWriter(io.Discard, 0)
	if got := w.Max(); got != DefaultMaxFrame {
		t.Errorf("got %d, want %d", got, DefaultMaxFrame)
	}
	w.SetMax(-1) // ignored
	w.SetMax(5)
	if got := w.Max(); got != 5 {
		t.Errorf("got %d, want %d", got, 5)
	}
	err := w.Write(KindTask, 1, make([]byte, 6))
	if _, ok := errors.AsType[*FrameTooLargeError](err); !ok {
		t.Errorf("got %v, want a *FrameTooLargeError", err)
	}
}

func TestReaderErrors(t *testing.T) {
	t.Parallel()
	frame := encodeFrame(t, KindTask, 1, []byte("payload"))
	tests := []struct {
		name   string
		in     []byte
		frames int   // read successfully before the error
		want   error // matched with errors.Is
	}{
		{name: "nothing", in: nil, want: io.EOF},
		{name: "clean end after a frame", in: frame, frames: 1, want: io.EOF},
		{name: "clean end after two frames", in: append(slicesClone(frame), frame...), frames: 2, want: io.EOF},
		{name: "one byte of header", in: frame[:1], want: io.ErrUnexpectedEOF},
		{name: "header cut", in: frame[:HeaderSize-1], want: io.ErrUnexpectedEOF},
		{name: "header without payload", in: frame[:HeaderSize], want: io.ErrUnexpectedEOF},
		{name: "payload cut", in: frame[:len(frame)-1], want: io.ErrUnexpectedEOF},
		{name: "second frame cut", in: append(slicesClone(frame), frame[:len(frame)-3]...), frames: 1, want: io.ErrUnexpectedEOF},
		{name: "length zero", in: header(0, KindTask, 1), want: ErrMalformed},
		{name: "length one short of the header", in: header(HeaderSize-5, KindTask, 1), want: ErrMalformed},
		{name: "length four", in: append(header(4, KindTask, 1), "xxxxxxxx"...), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewReader(bytes.NewReader(tt.in), 1<<10)
			for i := range tt.frames {
				if _, err := r.Read(); err != nil {
					t.Fatalf("frame %d: got %v, want nil", i, err)
				}
			}
			_, err := r.Read()
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if tt.want == io.EOF && err != io.EOF {
				t.Errorf("got %#v, want io.EOF itself, as io.Reader callers compare it", err)
			}
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

func TestKindString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind Kind
		want string
	}{
		{KindHello, "hello"}, {KindTask, "task"}, {KindResult, "result"},
		{KindCancel, "cancel"}, {KindRevoked, "revoked"}, {KindRevoke, "revoke"}, {KindOverrun, "overrun"}, {KindProgress, "progress"}, {0, "kind(0)"}, {255, "kind(255)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// Task and Result bodies.

func taskEqual(a, b Task) bool {
	return a.Func == b.Func && a.Deadline.Equal(b.Deadline) && a.Deadline.IsZero() == b.Deadline.IsZero() &&
		a.Timeout == b.Timeout && a.N == b.N && bytes.Equal(a.Args, b.Args)
}

func encodeTask(t Task) []byte { return append(AppendTaskHeader(nil, t), t.Args...) }

func validTasks() []Task {
	return []Task{
		{Func: "square", N: 1, Args: []byte{0x02}},
		{Func: "f", N: 1},
		{Func: "deadline", Deadline: time.Unix(1_700_000_000, 123456789), N: 1, Args: []byte{0x01}},
		{Func: "before 1970", Deadline: time.Unix(-1, 0), N: 1, Args: []byte{0x01}},
		{Func: "timeout", Timeout: 1500 * time.Millisecond, N: 1, Args: []byte{0x01}},
		{Func: "both", Deadline: time.Unix(1_800_000_000, 0), Timeout: time.Hour, N: 3, Args: []byte{0x83, 1, 2, 3}},
		{Func: "many", N: 1000, Args: bytes.Repeat([]byte{0x01}, 1000)},
		{Func: strings.Repeat("n", 128), N: 1, Args: []byte("long name")},
		{Func: "", N: math.MaxInt32, Args: []byte{0xf6}},
	}
}

func TestTaskRoundTrip(t *testing.T) {
	t.Parallel()
	for _, want := range validTasks() {
		t.Run(want.Func, func(t *testing.T) {
			t.Parallel()
			b := encodeTask(want)
			got, err := ParseTask(b)
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if !taskEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if len(got.Args) > 0 && &got.Args[0] != &b[len(b)-len(got.Args)] {
				t.Errorf("got Args copied, want them to alias the body")
			}
		})
	}
}

func TestAppendTaskHeaderAppends(t *testing.T) {
	t.Parallel()
	task := Task{Func: "f", N: 1}
	got := AppendTaskHeader([]byte("prefix"), task)
	want := append([]byte("prefix"), AppendTaskHeader(nil, task)...)
	if !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
}

func TestParseTaskMalformed(t *testing.T) {
	t.Parallel()
	valid := AppendTaskHeader(nil, Task{Func: "square", Deadline: time.Unix(5, 0), Timeout: time.Second, N: 2})
	tests := []struct {
		name string
		in   []byte
	}{
		{name: "empty", in: nil},
		{name: "name length only", in: []byte{0, 6}},
		{name: "name longer than the body", in: []byte{0xff, 0xff, 'a'}},
		{name: "no N", in: valid[:len(valid)-4]},
		{name: "N cut", in: valid[:len(valid)-1]},
		{name: "N zero", in: AppendTaskHeader(nil, Task{Func: "f"})},
		{name: "negative timeout", in: AppendTaskHeader(nil, Task{Func: "f", Timeout: -1, N: 1})},
		{name: "smallest timeout", in: AppendTaskHeader(nil, Task{Func: "f", Timeout: math.MinInt64, N: 1})},
	}
	testMalformed(t, tests, valid, ParseTask)
}

func resultEqual(a, b Result) bool {
	if a.RSS != b.RSS || a.N != b.N || a.All != b.All || len(a.Failures) != len(b.Failures) || !bytes.Equal(a.Values, b.Values) {
		return false
	}
	for i, f := range a.Failures {
		g := b.Failures[i]
		if f.Index != g.Index || f.Status != g.Status || !bytes.Equal(f.Info, g.Info) {
			return false
		}
	}
	return true
}

func encodeResult(r Result) []byte { return append(AppendResultHeader(nil, r), r.Values...) }

func validResults() []struct {
	name string
	r    Result
} {
	info, err := MarshalAny(ErrorInfo{Type: "*errors.errorString", Msg: "boom"})
	if err != nil {
		panic(err)
	}
	// Kept small: it seeds FuzzParseResult, whose minimizer is slow on
	// large inputs.
	many := Result{N: 100}
	for i := range 50 {
		many.Failures = append(many.Failures, Failure{Index: 2 * i, Status: StatusError, Info: []byte{0xa0}})
	}
	many.Values = bytes.Repeat([]byte{0xf6}, 100)
	return []struct {
		name string
		r    Result
	}{
		{name: "one value", r: Result{N: 1, Values: []byte{0x04}}},
		{name: "with rss", r: Result{RSS: 1 << 40, N: 2, Values: []byte{0x82, 1, 4}}},
		{name: "empty values", r: Result{N: 1}},
		{name: "error", r: Result{N: 1, Failures: []Failure{{Index: 0, Status: StatusError, Info: info}}}},
		{name: "panic with empty info", r: Result{N: 3, Failures: []Failure{{Index: 2, Status: StatusPanic}}, Values: []byte{0x83, 1, 1, 0}}},
		{name: "many failures", r: many},
		{name: "all failed", r: Result{N: 1000, All: true, Failures: []Failure{{Index: 0, Status: StatusError, Info: info}}}},
		{name: "zero items", r: Result{}},
	}
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range validResults() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseResult(encodeResult(tt.r))
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if !resultEqual(got, tt.r) {
				t.Errorf("got %+v, want %+v", got, tt.r)
			}
		})
	}
}

func TestParseResultMalformed(t *testing.T) {
	t.Parallel()
	failure := func(index uint32, status byte, infoLen uint32, info string) []byte {
		b := binary.BigEndian.AppendUint32(nil, index)
		b = append(b, status)
		b = binary.BigEndian.AppendUint32(b, infoLen)
		return append(b, info...)
	}
	head := func(n, failures uint32) []byte {
		b := binary.BigEndian.AppendUint64(nil, 0)
		b = binary.BigEndian.AppendUint32(b, n)
		return binary.BigEndian.AppendUint32(b, failures)
	}
	join := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	valid := AppendResultHeader(nil, Result{N: 2, Failures: []Failure{{Index: 1, Status: StatusPanic, Info: []byte("info")}}})

	tests := []struct {
		name string
		in   []byte
	}{
		{name: "empty", in: nil},
		{name: "rss only", in: valid[:8]},
		{name: "forged failure count", in: head(math.MaxUint32, math.MaxUint32)},
		{name: "forged failure count with bytes", in: join(head(math.MaxUint32, math.MaxUint32), failure(0, 1, 0, ""))},
		{name: "more failures than items", in: join(head(1, 2), failure(0, 1, 0, ""), failure(0, 1, 0, ""))},
		{name: "failure index out of range", in: join(head(2, 1), failure(2, 1, 0, ""))},
		{name: "largest failure index", in: join(head(2, 1), failure(math.MaxUint32, 1, 0, ""))},
		{name: "status zero", in: join(head(1, 1), failure(0, 0, 0, ""))},
		{name: "status four", in: join(head(1, 1), failure(0, 4, 0, ""))},
		{name: "status 255", in: join(head(1, 1), failure(0, 255, 0, ""))},
		{name: "forged info length", in: join(head(1, 1), failure(0, 1, math.MaxUint32, "abc"))},
		{name: "info cut", in: join(head(1, 1), failure(0, 1, 10, "abc"))},
	}
	testMalformed(t, tests, valid, ParseResult)
}

// Hello.

func TestParseHello(t *testing.T) {
	t.Parallel()
	ours := NewHello(Fingerprint([]string{"square(int) int", "upper(string) string"}))
	full := ours
	full.PID, full.Name, full.MaxFrame, full.OneShot, full.ReportRSS = 42, "Process-1", 1<<20, true, true
	with := func(f func(*Hello)) []byte {
		h := ours
		f(&h)
		return MarshalHello(h)
	}
	valid := MarshalHello(ours)

	tests := []struct {
		name     string
		in       []byte
		want     Hello
		mismatch string // the MismatchError's What, if one is wanted
		fail     bool   // any other error is wanted
	}{
		{name: "same", in: valid, want: ours},
		{name: "every field", in: MarshalHello(full), want: full},
		{name: "other version", in: with(func(h *Hello) { h.Version = Version + 1 }), mismatch: "protocol version"},
		{name: "version zero", in: with(func(h *Hello) { h.Version = 0 }), mismatch: "protocol version"},
		{name: "other fingerprint", in: with(func(h *Hello) { h.Fingerprint = Fingerprint([]string{"square(int) int"}) }), mismatch: "function registry"},
		{name: "no fingerprint", in: with(func(h *Hello) { h.Fingerprint = "" }), mismatch: "function registry"},
		{name: "wrong magic", in: with(func(h *Hello) { h.Magic = "http" }), fail: true},
		{name: "no magic", in: with(func(h *Hello) { h.Magic = "" }), fail: true},
		{name: "nothing", in: nil, fail: true},
		{name: "text", in: []byte("GET / HTTP/1.1\r\n"), fail: true},
		{name: "garbage", in: []byte{0xff, 0x00, 0x13, 0x37}, fail: true},
		{name: "cbor null", in: []byte{0xf6}, fail: true},
		{name: "cbor integer", in: []byte{0x01}, fail: true},
		{name: "cut", in: valid[:len(valid)-1], fail: true},
		{name: "trailing byte", in: append(slicesClone(valid), 0), fail: true},
		{name: "duplicate key", in: []byte{0xa2, 0x01, 0x60, 0x01, 0x60}, fail: true},
		{name: "version not an int", in: []byte{0xa2, 0x01, 0x69, 'm', 'p', '-', 'w', 'o', 'r', 'k', 'e', 'r', 0x02, 0x61, '1'}, fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHello(tt.in, ours)
			switch {
			case tt.mismatch != "":
				mismatch, ok := errors.AsType[*MismatchError](err)
				if !ok {
					t.Fatalf("got %v, want a *MismatchError", err)
				}
				if mismatch.What != tt.mismatch {
					t.Errorf("got What %q, want %q", mismatch.What, tt.mismatch)
				}
				if msg := err.Error(); !strings.Contains(msg, "same build") || !strings.HasPrefix(msg, "mp: ") {
					t.Errorf("got %q, want an mp: message that mentions the same build", msg)
				}
			case tt.fail:
				if err == nil {
					t.Fatalf("got %+v, nil; want an error", got)
				}
				if _, ok := errors.AsType[*MismatchError](err); ok {
					t.Errorf("got %v, want an error other than a *MismatchError", err)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("got %v, want an error wrapping %v", err, ErrMalformed)
				}
			default:
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if got != tt.want {
					t.Errorf("got %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}

func TestMismatchErrorShortens(t *testing.T) {
	t.Parallel()
	err := &MismatchError{What: "function registry", Ours: strings.Repeat("a", 64), Theirs: strings.Repeat("b", 64)}
	msg := err.Error()
	for _, want := range []string{strings.Repeat("a", 12), strings.Repeat("b", 12)} {
		if !strings.Contains(msg, want) {
			t.Errorf("got %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, strings.Repeat("a", 13)) {
		t.Errorf("got %q, want fingerprints cut to 12 characters", msg)
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	a := []string{"b(int) int", "a(string) string"}
	orig := slicesCloneStrings(a)
	tests := []struct {
		name  string
		other []string
		same  bool
	}{
		{name: "same order", other: []string{"b(int) int", "a(string) string"}, same: true},
		{name: "other order", other: []string{"a(string) string", "b(int) int"}, same: true},
		{name: "one missing", other: []string{"a(string) string"}},
		{name: "other type", other: []string{"a(string) string", "b(int) int64"}},
		{name: "joined differently", other: []string{"b(int) int\na(string) string"}, same: false},
		{name: "none", other: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Fingerprint(a) == Fingerprint(tt.other); got != tt.same {
				t.Errorf("got equal %v, want %v", got, tt.same)
			}
		})
	}
	Fingerprint(a)
	if !reflect.DeepEqual(a, orig) {
		t.Errorf("got %q after Fingerprint, want %q unchanged", a, orig)
	}
}

func slicesCloneStrings(s []string) []string { return append([]string(nil), s...) }

// Codec.

func TestMarshalRawBytes(t *testing.T) {
	t.Parallel()
	in := []byte{0xff, 0x00, 'r', 'a', 'w'} // not CBOR
	out, err := Marshal(in)
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if len(out) != len(in) || unsafe.SliceData(out) != unsafe.SliceData(in) {
		t.Errorf("got %x at %p, want the argument itself, %x at %p", out, unsafe.SliceData(out), in, unsafe.SliceData(in))
	}
	back, err := Unmarshal[[]byte](in)
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if unsafe.SliceData(back) != unsafe.SliceData(in) || len(back) != len(in) {
		t.Errorf("got %x, want the data itself", back)
	}
	if !IsRaw[[]byte]() || IsRaw[blob]() || IsRaw[string]() || IsRaw[[]uint16]() {
		t.Errorf("got IsRaw %v %v %v %v, want true false false false", IsRaw[[]byte](), IsRaw[blob](), IsRaw[string](), IsRaw[[]uint16]())
	}
}

type blob []byte

type point struct {
	X, Y int
	Tag  string `cbor:"t,omitempty"`
}

type node struct {
	Value int
	Next  *node
}

type record struct {
	Name    string
	Scores  map[string]int
	Points  []point
	List    *node
	When    time.Time
	Raw     []byte
	Nothing []int
	private int
}

// roundTrip encodes v with Marshal and decodes it back.
func roundTrip[T any](v T, eq func(a, b T) bool) func(*testing.T) {
	return func(t *testing.T) {
		t.Parallel()
		b, err := Marshal(v)
		if err != nil {
			t.Fatalf("Marshal: got %v, want nil", err)
		}
		if eq == nil {
			eq = func(a, b T) bool { return reflect.DeepEqual(a, b) }
		}
		got, err := Unmarshal[T](b)
		if err != nil {
			t.Fatalf("Unmarshal: got %v, want nil", err)
		}
		if !eq(got, v) {
			t.Errorf("Unmarshal: got %#v, want %#v", got, v)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 11, 22, 3, 52, 1, 123456789, time.UTC)
	rec := record{
		Name:   "r",
		Scores: map[string]int{"a": 1, "b": -2},
		Points: []point{{1, 2, ""}, {-3, 4, "t"}},
		List:   &node{1, &node{2, nil}},
		When:   when,
		Raw:    []byte{0, 1, 2},
	}
	tests := []struct {
		name string
		test func(*testing.T)
	}{
		{name: "int", test: roundTrip(42, nil)},
		{name: "negative int", test: roundTrip(int64(-1<<40), nil)},
		{name: "max int64", test: roundTrip(int64(math.MaxInt64), nil)},
		{name: "max uint64", test: roundTrip(uint64(math.MaxUint64), nil)},
		{name: "float", test: roundTrip(3.25, nil)},
		{name: "bool", test: roundTrip(true, nil)},
		{name: "string", test: roundTrip("héllo, wörld", nil)},
		{name: "empty string", test: roundTrip("", nil)},
		{name: "strings", test: roundTrip([]string{"a", "", "c"}, nil)},
		{name: "nil slice", test: roundTrip([]int(nil), nil)},
		{name: "named byte slice", test: roundTrip(blob("not raw"), nil)},
		{name: "map", test: roundTrip(map[string]int{"one": 1, "two": 2}, nil)},
		{name: "map int keys", test: roundTrip(map[int][]string{1: {"x"}, -5: nil}, nil)},
		{name: "struct", test: roundTrip(point{X: 1, Y: -2, Tag: "p"}, nil)},
		{name: "pointer", test: roundTrip(&point{X: 7}, nil)},
		{name: "array", test: roundTrip([3]int{1, 2, 3}, nil)},
		{name: "time", test: roundTrip(when, func(a, b time.Time) bool { return a.Equal(b) })},
		{name: "nested", test: roundTrip(rec, func(a, b record) bool {
			return a.When.Equal(b.When) && reflect.DeepEqual(
				record{a.Name, a.Scores, a.Points, a.List, time.Time{}, a.Raw, a.Nothing, 0},
				record{b.Name, b.Scores, b.Points, b.List, time.Time{}, b.Raw, b.Nothing, 0})
		})},
		{name: "any map", test: roundTrip(map[string]any{"s": "x", "n": uint64(3), "l": []any{"y"}}, nil)},
		{name: "error info", test: roundTrip(ErrorInfo{Type: "T", Msg: "m", Sentinel: "s"}, nil)},
		{name: "panic info", test: roundTrip(PanicInfo{Value: "v", Stack: []byte("goroutine 1")}, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.test)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()
	nested := func(depth int) []byte { return append(bytes.Repeat([]byte{0x81}, depth), 0x00) }
	tests := []struct {
		name string
		test func() error
	}{
		{name: "empty", test: func() error { _, err := Unmarshal[int](nil); return err }},
		{name: "garbage", test: func() error { _, err := Unmarshal[int]([]byte{0xff}); return err }},
		{name: "string into int", test: func() error { _, err := Unmarshal[int]([]byte{0x61, 'a'}); return err }},
		{name: "overflow", test: func() error { _, err := Unmarshal[int8]([]byte{0x19, 0x01, 0x00}); return err }},
		{name: "cut", test: func() error { _, err := Unmarshal[string]([]byte{0x65, 'a'}); return err }},
		{name: "trailing bytes", test: func() error { _, err := Unmarshal[int]([]byte{0x01, 0x02}); return err }},
		{name: "forged array length", test: func() error {
			_, err := Unmarshal[[]int]([]byte{0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00})
			return err
		}},
		{name: "forged map length", test: func() error {
			_, err := Unmarshal[map[int]int]([]byte{0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00})
			return err
		}},
		{name: "too deep", test: func() error { _, err := Unmarshal[any](nested(100)); return err }},
		{name: "indefinite length", test: func() error { _, err := Unmarshal[[]int]([]byte{0x9f, 0x01, 0xff}); return err }},
		{name: "duplicate map key", test: func() error {
			_, err := Unmarshal[map[string]int]([]byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02})
			return err
		}},
		{name: "invalid utf-8", test: func() error { _, err := Unmarshal[string]([]byte{0x61, 0xff}); return err }},
		{name: "byte string into string", test: func() error { _, err := Unmarshal[string]([]byte{0x41, 'a'}); return err }},
		{name: "UnmarshalAny", test: func() error { var h Hello; return UnmarshalAny([]byte{0xff}, &h) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.test(); !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want an error wrapping %v", err, ErrMalformed)
			}
		})
	}
	if _, err := Unmarshal[any](nested(60)); err != nil {
		t.Errorf("60 levels: got %v, want nil", err)
	}
}

func TestMarshalUnencodable(t *testing.T) {
	t.Parallel()
	if _, err := Marshal(make(chan int)); err == nil {
		t.Errorf("chan: got nil, want an error")
	}
	if _, err := Marshal[any](func() {}); err == nil {
		t.Errorf("func in an interface: got nil, want an error")
	}
}

type (
	withChan struct {
		A int
		C chan int
	}
	withUnexportedChan struct {
		A int
		c chan int
	}
	withSkippedChan struct {
		A int
		C chan int `cbor:"-"`
	}
	withJSONSkippedChan struct {
		A int
		C chan int `json:"-"`
	}
	withErrorField struct {
		V   int
		Err error
	}
	withReader   struct{ R io.Reader }
	hidden       struct{ C chan int }
	withEmbedded struct {
		A int
		hidden
	}
	withAnyField struct{ V any }
	noExported   struct{ a, b int }
	allSkipped   struct {
		A int `cbor:"-"`
	}
	withNoExported struct{ In []noExported }
	withMutex      struct {
		sync.Mutex
		A int
	}
	onlyEmbeddedHidden struct{ hiddenInts }
	hiddenInts         struct{ a int }
	promoted           struct{ exportedInts }
	exportedInts       struct{ A int }
	mutualA            struct{ B *mutualB }
	mutualB            struct {
		A  []mutualA
		As map[string]*mutualA
	}
	badNode struct {
		Next *badNode
		F    func()
	}
	deepBad struct{ Inner []map[string]*withChan }
)

func TestCheckType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  reflect.Type
		want string // a part of the error, or "" for none
	}{
		{name: "int", typ: reflect.TypeFor[int]()},
		{name: "string", typ: reflect.TypeFor[string]()},
		{name: "bytes", typ: reflect.TypeFor[[]byte]()},
		{name: "struct", typ: reflect.TypeFor[point]()},
		{name: "nested struct", typ: reflect.TypeFor[record]()},
		{name: "recursive", typ: reflect.TypeFor[node]()},
		{name: "recursive pointer", typ: reflect.TypeFor[*node]()},
		{name: "mutually recursive", typ: reflect.TypeFor[mutualA]()},
		{name: "map", typ: reflect.TypeFor[map[string][]int]()},
		{name: "any", typ: reflect.TypeFor[any]()},
		{name: "any field", typ: reflect.TypeFor[withAnyField]()},
		{name: "error", typ: reflect.TypeFor[error](), want: "interface type error cannot be decoded"},
		{name: "error field", typ: reflect.TypeFor[withErrorField](), want: "field Err of wire.withErrorField: interface type error"},
		{name: "reader field", typ: reflect.TypeFor[withReader](), want: "interface type io.Reader"},
		{name: "json skipped chan field", typ: reflect.TypeFor[withJSONSkippedChan]()},
		{name: "embedded unexported struct with chan", typ: reflect.TypeFor[withEmbedded](), want: "field hidden of wire.withEmbedded"},
		{name: "time", typ: reflect.TypeFor[time.Time]()},
		{name: "unexported chan field", typ: reflect.TypeFor[withUnexportedChan]()},
		{name: "skipped chan field", typ: reflect.TypeFor[withSkippedChan]()},
		{name: "chan", typ: reflect.TypeFor[chan int](), want: "chan int cannot cross a process boundary"},
		{name: "receive chan", typ: reflect.TypeFor[<-chan int](), want: "cannot cross"},
		{name: "func", typ: reflect.TypeFor[func()](), want: "func() cannot cross"},
		{name: "unsafe pointer", typ: reflect.TypeFor[unsafe.Pointer](), want: "cannot cross"},
		{name: "complex", typ: reflect.TypeFor[complex128](), want: "cannot cross"},
		{name: "struct with chan", typ: reflect.TypeFor[withChan](), want: "field C of wire.withChan"},
		{name: "map of func", typ: reflect.TypeFor[map[string]func()](), want: "in map[string]func()"},
		{name: "map with chan key", typ: reflect.TypeFor[map[chan int]int](), want: "cannot cross"},
		{name: "slice of chan", typ: reflect.TypeFor[[]chan int](), want: "in []chan int"},
		{name: "array of func", typ: reflect.TypeFor[[2]func()](), want: "cannot cross"},
		{name: "pointer to struct with chan", typ: reflect.TypeFor[*withChan](), want: "field C"},
		{name: "recursive with func", typ: reflect.TypeFor[badNode](), want: "field F of wire.badNode"},
		{name: "empty struct", typ: reflect.TypeFor[struct{}]()},
		{name: "no exported fields", typ: reflect.TypeFor[noExported](), want: "struct type wire.noExported has no exported fields: CBOR encodes only exported fields"},
		{name: "anonymous, no exported fields", typ: reflect.TypeFor[struct{ a, b int }](), want: "struct type struct { a int; b int } has no exported fields"},
		{name: "all fields skipped", typ: reflect.TypeFor[allSkipped](), want: "has no exported fields"},
		{name: "nested, no exported fields", typ: reflect.TypeFor[withNoExported](), want: "field In of wire.withNoExported: in []wire.noExported: struct type wire.noExported has no exported fields"},
		{name: "pointer, no exported fields", typ: reflect.TypeFor[*noExported](), want: "has no exported fields"},
		{name: "embedded mutex", typ: reflect.TypeFor[withMutex]()},
		{name: "embedded struct without exported fields only", typ: reflect.TypeFor[onlyEmbeddedHidden](), want: "has no exported fields"},
		{name: "promoted fields", typ: reflect.TypeFor[promoted]()},
		{name: "big.Int", typ: reflect.TypeFor[big.Int]()},
		{name: "deep", typ: reflect.TypeFor[deepBad](), want: "field Inner of wire.deepBad: in []map[string]*wire.withChan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckType(tt.typ)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// testMalformed checks that parse refuses each input of tests, and every
// truncation of valid, with an error wrapping ErrMalformed.
func testMalformed[V any](t *testing.T, tests []struct {
	name string
	in   []byte
}, valid []byte, parse func([]byte) (V, error)) {
	t.Helper()
	for n := range len(valid) {
		tests = append(tests, struct {
			name string
			in   []byte
		}{name: "cut at " + strconv.Itoa(n), in: valid[:n]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parse(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("got %+v, %v; want an error wrapping %v", got, err, ErrMalformed)
			}
		})
	}
}
