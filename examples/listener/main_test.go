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
		`server: a client with the wrong key was refused`,
		`server got "client" 1`,
		`client got "server" 2`,
		`server: the client is done`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
