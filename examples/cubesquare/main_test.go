package main

import (
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	// The two children run concurrently: their lines come in either order.
	want := []string{"Cube: 1000", "Square: 100"}
	if len(got) != 3 {
		t.Fatalf("got %q, want %q in any order, then %q", got, want, "Done!")
	}
	children := slices.Sorted(slices.Values(got[:2]))
	if !slices.Equal(children, want) || got[2] != "Done!" {
		t.Errorf("got %q, want %q in any order, then %q", got, want, "Done!")
	}
}
