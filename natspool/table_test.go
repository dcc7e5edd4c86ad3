package natspool_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/natspool"
)

// callCases is one table of calls and what each must give, run against a
// local pool and a NATS pool alike (TestSameCallsBothPools).
var callCases = []struct {
	name string
	run  func(ctx context.Context, p *mp.Pool) error
}{
	{"Map", func(ctx context.Context, p *mp.Pool) error {
		got, err := mp.Map(ctx, p, square, []int{1, 2, 3, 4}, mp.ChunkSize(2))
		return want(err == nil && slices.Equal(got, []int{1, 4, 9, 16}), got, err)
	}},
	{"MapAll with a failure", func(ctx context.Context, p *mp.Pool) error {
		got, errs, err := mp.MapAll(ctx, p, troubled, []int{1, -1, 3})
		var te *mp.TaskError
		ok := err == nil && got[0] == 1 && got[2] == 3 && errs[0] == nil && errors.As(errs[1], &te) && te.Index == 1
		return want(ok, got, errs)
	}},
	{"Imap", func(ctx context.Context, p *mp.Pool) error {
		var got []int
		for v, err := range mp.Imap(ctx, p, square, slices.Values([]int{5, 6, 7})) {
			if err != nil {
				return err
			}
			got = append(got, v)
		}
		return want(slices.Equal(got, []int{25, 36, 49}), got, nil)
	}},
	{"ImapUnordered", func(ctx context.Context, p *mp.Pool) error {
		sum := 0
		for v, err := range mp.ImapUnordered(ctx, p, square, slices.Values([]int{1, 2, 3}), mp.ChunkSize(1)) {
			if err != nil {
				return err
			}
			sum += v
		}
		return want(sum == 14, sum, nil)
	}},
	{"Apply", func(ctx context.Context, p *mp.Pool) error {
		v, err := mp.Apply(ctx, p, square, 12)
		return want(v == 144 && err == nil, v, err)
	}},
	{"ApplyAsync", func(ctx context.Context, p *mp.Pool) error {
		v, err := mp.ApplyAsync(ctx, p, square, 13).Wait(ctx)
		return want(v == 169 && err == nil, v, err)
	}},
	{"a panic", func(ctx context.Context, p *mp.Pool) error {
		_, err := mp.Apply(ctx, p, troubled, -2)
		var pe *mp.PanicError
		return want(errors.As(err, &pe) && pe.Value == "bad", nil, err)
	}},
	{"a crash", func(ctx context.Context, p *mp.Pool) error {
		_, err := mp.Apply(ctx, p, troubled, -3)
		var ee *mp.ExitError
		return want(errors.As(err, &ee) && ee.ExitCode() == 3, nil, err)
	}},
	{"an ended ctx", func(ctx context.Context, p *mp.Pool) error {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := mp.Apply(short, p, slow, "/dev/null")
		return want(errors.Is(err, context.DeadlineExceeded), nil, err)
	}},
}

func want(ok bool, got any, err any) error {
	if ok {
		return nil
	}
	return errors.New("got " + sprint(got) + ", " + sprint(err))
}

func sprint(v any) string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprint(v)
}

func TestSameCallsBothPools(t *testing.T) {
	ctx := bounded(t, 120*time.Second)
	local, err := mp.NewPool(ctx, mp.PoolOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	s := startServer(t)
	startNkeyHost(t, s)
	startHost(t, s.WorkerURL())
	remote := newPool(t, ctx, natspool.Options{URL: s.URL()})
	for _, pool := range []struct {
		name string
		p    *mp.Pool
	}{{"local", local}, {"nats", remote}} {
		for _, c := range callCases {
			if err := c.run(ctx, pool.p); err != nil {
				t.Errorf("%s pool: %s: %v", pool.name, c.name, err)
			}
		}
	}
}
