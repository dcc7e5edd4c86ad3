package natspool_test

import (
	"testing"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/natspool"
)

// benchCluster starts a server, two worker hosts and a pool, for a benchmark.
func benchCluster(b *testing.B) *mp.Pool {
	s := startServer(b)
	for range 2 {
		startHost(b, s.WorkerURL())
	}
	p := newPool(b, b.Context(), natspool.Options{URL: s.URL()})
	if _, err := mp.Apply(b.Context(), p, square, 1); err != nil { // the hosts are up
		b.Fatal(err)
	}
	return p
}

// BenchmarkNatsMap maps 20,000 small tasks, chunked, over 2 worker hosts
// on this machine. An op is the whole Map.
func BenchmarkNatsMap(b *testing.B) {
	p := benchCluster(b)
	in := make([]int, 20_000)
	for i := range in {
		in[i] = i
	}
	for b.Loop() {
		if _, err := mp.Map(b.Context(), p, square, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(in)*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkNatsApply is one Apply round trip through the server to a
// worker host and back.
func BenchmarkNatsApply(b *testing.B) {
	p := benchCluster(b)
	for b.Loop() {
		if _, err := mp.Apply(b.Context(), p, square, 3); err != nil {
			b.Fatal(err)
		}
	}
}
