package main

import (
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	want := []string{"[1 8 27 64 125 216]"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
