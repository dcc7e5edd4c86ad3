//go:build linux

package main

import (
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	want := []string{
		`parent sent "hello", child answered "HELLO!"`,
		`parent sent "how are you", child answered "HOW ARE YOU!"`,
		`parent sent "goodbye", child answered "GOODBYE!"`,
		`the child heard 3 messages, then EOF`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
