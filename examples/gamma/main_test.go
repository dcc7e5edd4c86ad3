package main

import (
	"fmt"
	"math"
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
	var want []string
	for _, x := range []float64{0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10} {
		want = append(want, fmt.Sprintf("Gamma(%g) = %g", x, math.Gamma(x)))
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Spot checks that do not lean on math.Gamma: Γ(n) = (n-1)!.
	for _, line := range []string{"Gamma(0.5) = 1.7724538509055159", "Gamma(1) = 1", "Gamma(10) = 362880"} {
		if !slices.Contains(got, line) {
			t.Errorf("got %q, want it to contain %q", got, line)
		}
	}
}
