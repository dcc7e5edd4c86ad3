package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// The fuzz targets feed a peer's bytes to every decoder. Beyond the seeds
// below, testdata/fuzz/<target> holds a committed corpus of valid and
// malformed inputs, which plain "go test" runs too.

// fuzzMax is the frame limit of FuzzReadFrame: small, so that the fuzzer
// reaches it often.
const fuzzMax = 64

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeFrame(f, KindTask, 1, []byte("payload")))
	f.Add(encodeFrame(f, KindCancel, 2))
	f.Add(encodeFrame(f, KindHello, 0, MarshalHello(NewHello("fp"))))
	f.Add(append(encodeFrame(f, KindResult, 3, make([]byte, fuzzMax)), encodeFrame(f, KindRevoked, 4)...))
	f.Add(encodeFrame(f, KindTask, 1, make([]byte, fuzzMax+1)))
	f.Add(header(0xffffffff, KindTask, 1))
	f.Add(header(3, KindTask, 1))
	f.Add(encodeFrame(f, KindTask, 1, []byte("cut"))[:HeaderSize+1])

	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), fuzzMax)
		var again bytes.Buffer
		w := NewWriter(&again, fuzzMax)
		for {
			fr, err := r.Read()
			if err != nil {
				_, tooLarge := errors.AsType[*FrameTooLargeError](err)
				if err != io.EOF && err != io.ErrUnexpectedEOF && !tooLarge && !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %v, want io.EOF, io.ErrUnexpectedEOF, a *FrameTooLargeError or ErrMalformed", err)
				}
				if err == io.EOF && !bytes.Equal(again.Bytes(), data) {
					t.Fatalf("io.EOF with %d of %d bytes read back", again.Len(), len(data))
				}
				break
			}
			if len(fr.Payload) > fuzzMax {
				t.Fatalf("got a payload of %d bytes, want at most %d", len(fr.Payload), fuzzMax)
			}
			if err := w.Write(fr.Kind, fr.ID, fr.Payload); err != nil {
				t.Fatalf("writing back a frame read: got %v, want nil", err)
			}
		}
		// Every frame read, written back, gives the bytes it was read from.
		if !bytes.HasPrefix(data, again.Bytes()) {
			t.Fatalf("got %x written back, want a prefix of %x", again.Bytes(), data)
		}
	})
}

func FuzzParseTask(f *testing.F) {
	for _, task := range validTasks() {
		f.Add(encodeTask(task))
	}
	f.Add([]byte{})
	f.Add(AppendTaskHeader(nil, Task{Func: "f"}))
	f.Add(AppendTaskHeader(nil, Task{Func: "f", N: 1, Timeout: -time.Second}))
	f.Add([]byte{0xff, 0xff, 'f'})

	f.Fuzz(func(t *testing.T, b []byte) {
		task, err := ParseTask(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want an error wrapping %v", err, ErrMalformed)
			}
			return
		}
		if task.N <= 0 || task.Timeout < 0 {
			t.Fatalf("got N %d, timeout %v; want both refused", task.N, task.Timeout)
		}
		enc := encodeTask(task)
		if !bytes.Equal(enc, b) {
			t.Fatalf("got %x encoded back, want %x", enc, b)
		}
		again, err := ParseTask(enc)
		if err != nil {
			t.Fatalf("parsing %+v encoded back: got %v, want nil", task, err)
		}
		if !taskEqual(again, task) {
			t.Fatalf("got %+v, want %+v", again, task)
		}
	})
}

func FuzzParseResult(f *testing.F) {
	for _, tt := range validResults() {
		f.Add(encodeResult(tt.r))
	}
	f.Add([]byte{})
	f.Add(AppendResultHeader(nil, Result{N: 1, Failures: []Failure{{Index: 1, Status: StatusError}}}))
	f.Add(AppendResultHeader(nil, Result{N: 1, Failures: []Failure{{Index: 0, Status: 7}}}))
	f.Add(bytes.Repeat([]byte{0xff}, 24))

	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResult(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want an error wrapping %v", err, ErrMalformed)
			}
			return
		}
		if r.N < 0 || len(r.Failures) > r.N {
			t.Fatalf("got %d failures among %d items, want it refused", len(r.Failures), r.N)
		}
		for _, fail := range r.Failures {
			if fail.Index < 0 || fail.Index >= r.N || fail.Status < StatusError || fail.Status > StatusLost {
				t.Fatalf("got failure %+v among %d items, want it refused", fail, r.N)
			}
		}
		enc := encodeResult(r)
		if !bytes.Equal(enc, b) {
			t.Fatalf("got %x encoded back, want %x", enc, b)
		}
		again, err := ParseResult(enc)
		if err != nil {
			t.Fatalf("parsing %+v encoded back: got %v, want nil", r, err)
		}
		if !resultEqual(again, r) {
			t.Fatalf("got %+v, want %+v", again, r)
		}
	})
}

// fuzzHello is the hello FuzzParseHello checks against.
var fuzzHello = NewHello(Fingerprint([]string{"square(int) int"}))

func FuzzParseHello(f *testing.F) {
	full := fuzzHello
	full.PID, full.Name, full.MaxFrame, full.OneShot, full.ReportRSS = 42, "Process-1", 1<<20, true, true
	other := fuzzHello
	other.Version++
	f.Add(MarshalHello(fuzzHello))
	f.Add(MarshalHello(full))
	f.Add(MarshalHello(other))
	f.Add(MarshalHello(NewHello("other")))
	f.Add([]byte{})
	f.Add([]byte{0xf6})
	f.Add([]byte("GET / HTTP/1.1\r\n"))

	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hello
		if err := UnmarshalAny(b, &h); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want an error wrapping %v", err, ErrMalformed)
			}
		} else {
			var again Hello
			if err := UnmarshalAny(MarshalHello(h), &again); err != nil || again != h {
				t.Fatalf("got %+v, %v decoded back; want %+v, nil", again, err, h)
			}
		}
		got, err := ParseHello(b, fuzzHello)
		if err != nil {
			return
		}
		if got != h {
			t.Fatalf("got %+v, want %+v", got, h)
		}
		again, err := ParseHello(MarshalHello(got), fuzzHello)
		if err != nil || again != got {
			t.Fatalf("got %+v, %v parsed back; want %+v, nil", again, err, got)
		}
	})
}
