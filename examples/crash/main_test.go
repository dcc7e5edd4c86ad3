//go:build unix

package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m) }

func TestOutput(t *testing.T) {
	lines, _ := exampletest.Run(t)
	if len(lines) != 22 {
		t.Fatalf("got %d lines, want 22:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	check(t, lines[:21])
	if got, want := lines[21], "workers replaced: 5 (exit: 4, timeout: 1)"; got != want {
		t.Errorf("line 22: got %q, want %q", got, want)
	}
}

// TestOnCluster runs the example's body on worker hosts through NATS: the
// same items fail in the same ways, on a host's worker.
func TestOnCluster(t *testing.T) {
	lines := exampletest.OnCluster(t, options, run)
	if len(lines) != 21 {
		t.Fatalf("got %d lines, want 21:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	check(t, lines)
}

func check(t *testing.T, lines []string) {
	t.Helper()
	// Worker PIDs and the fault address vary: those lines are patterns.
	failed := map[int]*regexp.Regexp{
		3:  regexp.MustCompile(`^task 3: exit code 2: mp: examples\.crash\.work\[3\]: worker \d+( on \S+)? exited with code 2: unexpected fault address 0x[0-9a-f]+$`),
		7:  regexp.MustCompile(`^task 7: exit code 3: mp: examples\.crash\.work\[7\]: worker \d+( on \S+)? exited with code 3$`),
		11: regexp.MustCompile(`^task 11: timeout: mp: examples\.crash\.work\[11\]: task ran past its 500ms TaskTimeout and was killed: context deadline exceeded$`),
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
	// The time is bounded: the loop costs one timeout of 500ms, the other
	// failures a worker start or two each.
	if d, err := time.ParseDuration(elapsed); err != nil || d > 20*time.Second {
		t.Errorf("line 21: got %q, want a duration under 20s", lines[20])
	}
}
