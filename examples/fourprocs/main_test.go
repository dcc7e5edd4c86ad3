package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	lines, parent := exampletest.Run(t)
	// parent, 4 child lines in any order, child pids, the final line.
	if len(lines) != 7 {
		t.Fatalf("got %d lines, want 7:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if got, want := lines[0], fmt.Sprint("parent ", parent); got != want {
		t.Errorf("line 1: got %q, want %q", got, want)
	}
	if got, want := lines[6], "All number printing is complete"; got != want {
		t.Errorf("last line: got %q, want %q", got, want)
	}

	byNumber := make(map[int]int) // number -> pid of the child that printed it
	seen := make(map[int]bool)    // pids
	for _, line := range lines[1:5] {
		var n, pid int
		if _, err := fmt.Sscanf(line, "number %d from process %d", &n, &pid); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if _, dup := byNumber[n]; dup || n < 1 || n > 4 {
			t.Errorf("line %q: number %d is out of range or repeated", line, n)
		}
		if seen[pid] || pid == parent {
			t.Errorf("line %q: pid %d is the parent's or repeated", line, pid)
		}
		byNumber[n], seen[pid] = pid, true
	}

	// Each Wait returned the pid its child printed.
	want := fmt.Sprintf("child pids: [%d %d %d %d]", byNumber[1], byNumber[2], byNumber[3], byNumber[4])
	if lines[5] != want {
		t.Errorf("line 6: got %q, want %q", lines[5], want)
	}
}
