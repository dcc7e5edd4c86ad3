package main

import (
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	want := []string{"this is my child process", "Parent process continues execution"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
