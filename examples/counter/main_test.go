//go:build linux

package main

import (
	"strings"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	if len(got) != 3 || got[0] != "with the lock: 400000" || !strings.HasPrefix(got[1], "without the lock: ") {
		t.Errorf("got %q, want the locked total 400000, then the unlocked one", got)
	}
}
