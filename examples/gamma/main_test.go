package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOutput(t *testing.T) {
	got, _ := run(t)
	var want []string
	for _, x := range []float64{0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10} {
		want = append(want, fmt.Sprintf("Gamma(%g) = %g", x, math.Gamma(x)))
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Spot checks that do not lean on math.Gamma: Γ(n) = (n-1)!.
	for _, line := range []string{"Gamma(0.5) = 1.7724538509055159", "Gamma(1) = 1", "Gamma(10) = 362880"} {
		if !slices.Contains(got, line) {
			t.Errorf("got %q, want it to contain %q", got, line)
		}
	}
}

// run builds the example into a temporary directory, runs it, and returns
// the lines of its stdout and its process ID.
func run(t *testing.T) (lines []string, pid int) {
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
