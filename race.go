//go:build race

package mp

// raceEnabled is whether this is a -race build: its workers stop at a data
// race with raceExitCode (GORACE=halt_on_error=1, see internal/spawn).
const raceEnabled = true
