package worker

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/go-mp/mp/internal/wire"
)

// TestRevokedToldBeforeNextTask holds the worker to the promise the parent
// relies on to blame the right task (commit f96a260; the parent's side is
// the mp package's TestSchedRevokedThenCrash): a task revoked from the
// queue is reported revoked before the next task starts, not whenever the
// reply goroutine runs, so that a worker that dies in the next task has
// said first that the revoked one never ran. No reply goroutine runs here:
// run alone must send it.
func TestRevokedToldBeforeNextTask(t *testing.T) {
	var out bytes.Buffer
	s := &server{ready: make(chan struct{}, 1), item: -1, w: wire.NewWriter(&out, 0)}
	s.hello.OneShot = true // run returns after one task
	var sent []string      // the frames the parent had been sent when Y started
	s.cfg.Lookup = func(name string) (Handler, bool) {
		return func(ctx context.Context, args []byte, n int, each func(func(context.Context, int) error)) ([]byte, error) {
			sent = frames(t, out.Bytes())
			each(func(context.Context, int) error { return nil })
			return nil, nil
		}, true
	}
	s.queue = []*task{{id: 2, body: wire.Task{Func: "r", N: 1}}, {id: 3, body: wire.Task{Func: "y", N: 1}}}
	s.cancel(2, false) // the parent's revoke of R, queued behind what runs
	if code := s.run(); code != ExitOK {
		t.Fatalf("run: got exit code %d, want %d", code, ExitOK)
	}
	if want := []string{"revoked 2"}; !slices.Equal(sent, want) {
		t.Errorf("sent when Y started: got %q, want %q", sent, want)
	}
	if got, want := frames(t, out.Bytes()), []string{"revoked 2", "result 3"}; !slices.Equal(got, want) {
		t.Errorf("sent in all: got %q, want %q", got, want)
	}
}

// frames describes the frames in b: "revoked 2".
func frames(t *testing.T, b []byte) []string {
	t.Helper()
	var got []string
	r := wire.NewReader(bytes.NewReader(b), 0)
	for {
		f, err := r.Read()
		if err != nil {
			return got
		}
		got = append(got, fmt.Sprintf("%v %d", f.Kind, f.ID))
	}
}
