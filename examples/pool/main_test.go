package main

import (
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	want := []string{"[0 1 4 9 16 25 36 49 64 81]"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
