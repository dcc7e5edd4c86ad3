package mp

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func affinityCount() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return runtime.NumCPU()
	}
	return set.Count()
}

// quotaCount returns the CPU limit of this process's cgroup, rounded up, or 0
// if there is none. Only the process's own cgroup is read, as Python's
// process_cpu_count and Go's GOMAXPROCS default do in the common case.
func quotaCount() int {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// v2: "0::/path"; v1: "N:cpu,cpuacct:/path".
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			if n := quotaV2("/sys/fs/cgroup" + parts[2]); n > 0 {
				return n
			}
			return quotaV2("/sys/fs/cgroup")
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpu" {
				return quotaV1("/sys/fs/cgroup/cpu,cpuacct"+parts[2], "/sys/fs/cgroup/cpu"+parts[2])
			}
		}
	}
	return 0
}

func quotaV2(dir string) int {
	b, err := os.ReadFile(dir + "/cpu.max")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	return ratio(f[0], f[1])
}

func quotaV1(dirs ...string) int {
	for _, dir := range dirs {
		q, err1 := os.ReadFile(dir + "/cpu.cfs_quota_us")
		p, err2 := os.ReadFile(dir + "/cpu.cfs_period_us")
		if err1 == nil && err2 == nil {
			return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
		}
	}
	return 0
}

func ratio(quota, period string) int {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return int((q + p - 1) / p)
}
