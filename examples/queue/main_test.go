//go:build linux

package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	var form []string
	forms := 0
	for _, line := range got {
		if t, ok := strings.CutPrefix(line, "consumer got "); ok {
			form = append(form, t)
			continue
		}
		if !strings.HasPrefix(line, "the consumer took 5 tickets, ended by ") {
			t.Fatalf("line %q in\n%s", line, strings.Join(got, "\n"))
		}
		forms++
		// Every ticket once; the producer's four in its order.
		var mine []string
		for _, tk := range form {
			if tk != "ticket5" {
				mine = append(mine, tk)
			}
		}
		if len(form) != 5 || !slices.Contains(form, "ticket5") || !slices.Equal(mine, []string{"ticket1", "ticket2", "ticket3", "ticket4"}) {
			t.Errorf("form %d: the consumer got %q", forms, form)
		}
		form = nil
	}
	if forms != 2 {
		t.Errorf("%d forms ran, want 2:\n%s", forms, strings.Join(got, "\n"))
	}
}
