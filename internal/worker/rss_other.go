//go:build !linux

package worker

func rss() uint64 { return 0 }

// RSS returns 0: resident set sizes are read on Linux only.
func RSS(pid int) uint64 { return 0 }
