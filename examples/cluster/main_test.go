package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	if len(got) < 21 {
		t.Fatalf("got %q", got)
	}
	total := 0
	for i, line := range got[:20] {
		want := fmt.Sprintf("%d squared is %d, on host-", i+1, (i+1)*(i+1))
		if !strings.HasPrefix(line, want) {
			t.Errorf("line %d: %q, want it to start with %q", i, line, want)
		}
	}
	for _, line := range got[20:] {
		var host string
		var n int
		if _, err := fmt.Sscanf(line, "%s ran %d", &host, &n); err != nil || !strings.HasPrefix(host, "host-") {
			t.Errorf("summary line %q", line)
		}
		total += n
	}
	if total != 20 {
		t.Errorf("the hosts ran %d tasks, want 20", total)
	}
}
