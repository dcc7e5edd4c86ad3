package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

// items are the example's work items and their lengths in seconds.
var items = map[string]int{"A": 5, "B": 2, "C": 1, "D": 3}

func TestOutput(t *testing.T) {
	lines, _ := exampletest.Run(t)
	// 4 starts and 4 ends from the workers, in an order that depends on
	// scheduling, then 4 lines from the parent, in the order of the items.
	if len(lines) != 12 {
		t.Fatalf("got %d lines, want 12:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	started, finished := map[string]int{}, map[string]int{} // item -> line number
	for i, line := range lines[:8] {
		var name string
		var secs int
		if _, err := fmt.Sscanf(line, "Process %s waiting %d seconds", &name, &secs); err == nil {
			if want, ok := items[name]; !ok || secs != want {
				t.Errorf("line %q: got %d seconds for %q, want %d", line, secs, name, want)
			}
			if _, dup := started[name]; dup {
				t.Errorf("line %q: %s started twice", line, name)
			}
			started[name] = i
			continue
		}
		name, ok := strings.CutSuffix(strings.TrimPrefix(line, "Process "), " Finished.")
		if !ok {
			t.Fatalf("line %q: want a worker's start or end line", line)
		}
		if _, ok := started[name]; !ok {
			t.Errorf("line %q: %s finished before it started", line, name)
		}
		if _, dup := finished[name]; dup {
			t.Errorf("line %q: %s finished twice", line, name)
		}
		finished[name] = i
	}
	for name := range items {
		if _, ok := finished[name]; !ok {
			t.Errorf("%s did not finish", name)
		}
	}

	workers := map[string]string{} // item -> worker
	for i, line := range lines[8:] {
		var name, worker string
		var pid int
		if _, err := fmt.Sscanf(line, "%s ran on %s (pid %d)", &name, &worker, &pid); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if want := string(rune('A' + i)); name != want {
			t.Errorf("line %q: got item %s, want %s", line, name, want)
		}
		if !strings.HasPrefix(worker, "PoolWorker-") || pid <= 0 {
			t.Errorf("line %q: want a PoolWorker name and a pid", line)
		}
		workers[name] = fmt.Sprint(worker, pid)
	}
	// B's worker is free after 2s, while A runs for 5s: it runs C and D.
	if workers["C"] != workers["B"] || workers["D"] != workers["B"] {
		t.Errorf("got B on %s, C on %s, D on %s; want them on one worker", workers["B"], workers["C"], workers["D"])
	}
	if workers["A"] == workers["B"] {
		t.Errorf("got A and B both on %s, want them on different workers", workers["A"])
	}
}

// TestStartOrder checks that each worker takes the next item when it is
// free, as in Python's Pool: so A and B start at
// once, C when B is done, and D when C is done.
func TestStartOrder(t *testing.T) {
	lines, _ := exampletest.Run(t)
	var starts []string
	for _, line := range lines {
		var name string
		var secs int
		if _, err := fmt.Sscanf(line, "Process %s waiting %d seconds", &name, &secs); err == nil {
			starts = append(starts, name)
		}
	}
	if len(starts) != 4 || !slices.Equal(slices.Sorted(slices.Values(starts[:2])), []string{"A", "B"}) ||
		!slices.Equal(starts[2:], []string{"C", "D"}) {
		t.Errorf("items started in the order %q, want A and B in either order, then C, D", starts)
	}
}
