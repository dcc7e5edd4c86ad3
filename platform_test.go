package mp

import (
	"errors"
	"strings"
	"testing"
)

func TestUnsupportedOptions(t *testing.T) {
	t.Parallel()
	linux := platform{name: "linux", rss: true}
	darwin := platform{name: "darwin", rss: false}
	tests := []struct {
		name string
		opts PoolOptions
		pl   platform
		want string // a part of the error, or "" for none
	}{
		{name: "none on darwin", pl: darwin},
		{name: "memory limit on linux", opts: PoolOptions{WorkerMemoryLimit: 1 << 30}, pl: linux},
		{name: "recycling on linux", opts: PoolOptions{MaxWorkerMemory: 1 << 30}, pl: linux},
		{name: "memory limit on darwin", opts: PoolOptions{WorkerMemoryLimit: 1 << 30}, pl: darwin,
			want: "PoolOptions.WorkerMemoryLimit is set, but a worker's memory cannot be read on darwin"},
		{name: "recycling on darwin", opts: PoolOptions{MaxWorkerMemory: 1 << 30}, pl: darwin,
			want: "PoolOptions.MaxWorkerMemory is set"},
		{name: "this system", opts: PoolOptions{WorkerMemoryLimit: 1 << 30}, pl: thisPlatform,
			want: map[bool]string{true: "", false: "WorkerMemoryLimit"}[thisPlatform.rss]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.opts.unsupported(tt.pl)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errors.ErrUnsupported)):
				t.Errorf("got %v, want an error matching errors.ErrUnsupported and containing %q", err, tt.want)
			}
		})
	}
}
