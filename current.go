package mp

import (
	"os"
	"sync/atomic"
)

// ProcessInfo describes a process of the program, as [Current] returns it.
type ProcessInfo struct {
	PID  int
	PPID int
	// Name is "MainProcess" in the parent, "Process-N" in a process started
	// by Spawn, and "PoolWorker-N" in a pool's worker.
	Name string
	// Worker reports whether this process is an mp worker.
	Worker bool
}

var (
	isWorker   atomic.Bool
	workerName atomic.Pointer[string]
)

// Current describes the calling process. It is safe for concurrent use.
func Current() ProcessInfo {
	info := ProcessInfo{PID: os.Getpid(), PPID: os.Getppid(), Name: "MainProcess", Worker: isWorker.Load()}
	if n := workerName.Load(); n != nil && *n != "" {
		info.Name = *n
	}
	return info
}

// CPUCount returns the number of CPUs this process may use: the CPUs in its
// affinity mask, further bounded by its cgroup's CPU quota, and at least 1.
// It is the default number of pool workers. Unlike runtime.NumCPU, it
// follows a container's quota; unlike runtime.GOMAXPROCS, it ignores the
// GOMAXPROCS setting.
func CPUCount() int {
	n := affinityCount()
	if q := quotaCount(); q > 0 && q < n {
		n = q
	}
	return max(n, 1)
}
