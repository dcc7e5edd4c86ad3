// Package exampletest holds what the tests of the examples share: building
// an example and running it as a program, and running its body on worker
// hosts through NATS.
package exampletest

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/internal/natstest"
)

// Main is the TestMain of an example whose test runs it on worker hosts
// (OnCluster): the test binary is the hosts' binary too.
func Main(m *testing.M) { natstest.Main(m) }

// OnCluster runs run, an example's body, on a pool with the options opts
// on two worker hosts through an embedded NATS server, all on this
// machine, and returns the lines it wrote. The example's TestMain must
// call Main. In short mode it skips the test.
func OnCluster(t *testing.T, opts mp.PoolOptions, run func(context.Context, *mp.Pool, io.Writer) error) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a NATS server and two worker hosts")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	p := natstest.Cluster(t, ctx, opts)
	var out bytes.Buffer
	if err := run(ctx, p, &out); err != nil {
		t.Fatalf("on worker hosts: %v\noutput:\n%s", err, &out)
	}
	return splitLines(out.String())
}

func splitLines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// Run builds the example in the current directory (the test's package
// directory) into a temporary directory, runs it, and returns the lines of
// its stdout and its process ID. It fails the test if the build or the run
// fails, and flags any output on stderr. In short mode it skips the test.
func Run(t *testing.T) (lines []string, pid int) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "prog")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second // children share stdout and stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", bin, err, &stdout, &stderr)
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr:\n%s", &stderr)
	}
	return splitLines(stdout.String()), cmd.Process.Pid
}
