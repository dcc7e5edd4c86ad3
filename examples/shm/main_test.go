//go:build linux

package main

import (
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	// The bytes are i*7 mod 256 for i in [0, 256 MiB): each byte value
	// comes up equally often, so the total is 2^20 * (0+1+...+255).
	want := []string{"total: 34225520640", "matches the parent's sum: true"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
