//go:build race

package wire

// raceEnabled is set under the race detector, which turns off the
// runtime's packing of small allocations that the cost model counts on.
const raceEnabled = true
