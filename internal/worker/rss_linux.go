package worker

import (
	"bytes"
	"os"
	"strconv"
)

// rss returns this process's resident set size in bytes, or 0 if unknown.
func rss() uint64 { return RSS(os.Getpid()) }

// RSS returns the resident set size of process pid in bytes, or 0 if unknown.
func RSS(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
