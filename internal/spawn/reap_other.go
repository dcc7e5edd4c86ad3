//go:build !linux

package spawn

// adopt and disown are for a parent that is PID 1, on Linux only.
func adopt(pid int)  {}
func disown(pid int) {}

func adoptKilled(pids []int) {}
