package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestOutput(t *testing.T) {
	lines, _ := run(t)
	if len(lines) != 22 {
		t.Fatalf("got %d lines, want 22:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	// Worker PIDs and the fault address vary: those lines are patterns.
	failed := map[int]*regexp.Regexp{
		3:  regexp.MustCompile(`^task 3: exit code 2: mp: examples\.crash\.work\[3\]: worker \d+ exited with code 2: unexpected fault address 0x[0-9a-f]+$`),
		7:  regexp.MustCompile(`^task 7: exit code 3: mp: examples\.crash\.work\[7\]: worker \d+ exited with code 3$`),
		11: regexp.MustCompile(`^task 11: timeout: mp: examples\.crash\.work\[11\]: task ran past its 500ms timeout: context deadline exceeded$`),
		15: regexp.MustCompile(`^task 15: panic: mp: examples\.crash\.work\[15\]: task panicked: item 15 is bad$`),
	}
	for i, line := range lines[:20] {
		if re, ok := failed[i]; ok {
			if !re.MatchString(line) {
				t.Errorf("line %d: got %q, want a match for %s", i+1, line, re)
			}
			continue
		}
		if want := fmt.Sprintf("task %d: ok %d", i, i*i); line != want {
			t.Errorf("line %d: got %q, want %q", i+1, line, want)
		}
	}

	var elapsed string
	if _, err := fmt.Sscanf(lines[20], "16 ok, 4 failed, in %s", &elapsed); err != nil {
		t.Fatalf("line 21: got %q, want %q: %v", lines[20], "16 ok, 4 failed, in <duration>", err)
	}
	// The time is bounded: the loop costs two timeouts of 500ms (in its
	// chunk, then alone), the other failures a worker start each.
	if d, err := time.ParseDuration(elapsed); err != nil || d > 20*time.Second {
		t.Errorf("line 21: got %q, want a duration under 20s", lines[20])
	}
	if got, want := lines[21], "workers replaced: 6 (exit: 4, timeout: 2)"; got != want {
		t.Errorf("line 22: got %q, want %q", got, want)
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
