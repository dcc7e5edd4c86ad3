// Package exampletest holds what the tests of the examples share: building
// an example and running it as a program.
package exampletest

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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
	return strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n"), cmd.Process.Pid
}
