package main

import (
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m) }

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
	check(t, got)
}

// TestOnCluster runs the example's body on worker hosts through NATS.
func TestOnCluster(t *testing.T) {
	check(t, exampletest.OnCluster(t, options, run))
}

func check(t *testing.T, got []string) {
	t.Helper()
	want := []string{"[0 1 4 9 16 25 36 49 64 81]"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
