package main

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/go-mp/mp/examples/internal/exampletest"
)

func TestOutput(t *testing.T) {
	got, _ := exampletest.Run(t)
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
