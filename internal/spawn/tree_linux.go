package spawn

import (
	"bytes"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// proc is one process as /proc shows it.
type proc struct {
	pid, ppid, pgrp int
	zombie          bool
}

// processes lists the processes this one can see in /proc.
func processes() []proc {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	out := make([]proc, 0, len(names))
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // it exited
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(string(f[1]))
		pgrp, _ := strconv.Atoi(string(f[2]))
		out = append(out, proc{pid: pid, ppid: ppid, pgrp: pgrp, zombie: string(f[0]) == "Z"})
	}
	return out
}

// descendants returns the processes below root in the process tree, and the
// processes of the process group root leads (they may have lost their
// parent), root excluded.
func descendants(root int) []int {
	all := processes()
	children := make(map[int][]int, len(all))
	var out []int
	for _, p := range all {
		children[p.ppid] = append(children[p.ppid], p.pid)
		if p.pgrp == root && p.pid != root {
			out = append(out, p.pid)
		}
	}
	for i, queue := 0, children[root]; i < len(queue); i++ {
		pid := queue[i]
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// killTree kills the process group that pid leads and every descendant of
// pid, including those that left the group (setsid, setpgid) while their
// parents live. The tree is read first: once pid dies, its children are
// reparented and the tree cannot be followed any more.
func killTree(pid int) error {
	below := descendants(pid)
	err := killGroup(pid)
	for _, d := range below {
		unix.Kill(d, unix.SIGKILL)
	}
	adoptKilled(below) // a PID 1 parent reaps them
	return err
}

// KillDescendants kills every process below this one (see killTree), for a
// worker that exits: what it started must not outlive it. While the parent
// lives, which sweeps the worker's group once it has exited, only the
// process tree is walked, from the children the kernel lists (a few files,
// not all of /proc); otherwise the group's members are looked for too.
func KillDescendants() {
	// One at a time: the read loop (EOF) and the parent-death signal both
	// come here when the parent dies. Were they to run at once, one could
	// kill a child, the other then miss that child's children (reparented
	// away from this tree) and exit the process before the first had
	// killed them.
	killMu.Lock()
	defer killMu.Unlock()
	me := os.Getpid()
	parentLives := parentPID != 0 && os.Getppid() == parentPID
	if parentLives && !hasChildren() {
		return // nothing below: the common case, and a tenth of a worker's exit
	}
	below, ok := childTree(me)
	if !ok || !parentLives {
		below = descendants(me)
	}
	for _, d := range below {
		if d != me {
			unix.Kill(d, unix.SIGKILL)
		}
	}
}

var killMu sync.Mutex

// hasChildren reports whether this process has a child, living or not
// yet reaped, with one system call that reaps nothing.
func hasChildren() bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err != unix.ECHILD
		}
	}
}

// childTree returns the processes below root, from the children files of
// /proc (which only some kernels have: ok is false where they are missing).
func childTree(root int) (below []int, ok bool) {
	for i, queue := 0, []int{root}; i < len(queue); i++ {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(queue[i]) + "/task")
		if err != nil {
			continue // it exited
		}
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(queue[i]) + "/task/" + t.Name() + "/children")
			if err != nil {
				if os.IsNotExist(err) && queue[i] == root {
					return nil, false
				}
				continue
			}
			for _, f := range bytes.Fields(b) {
				if pid, err := strconv.Atoi(string(f)); err == nil {
					queue = append(queue, pid)
					below = append(below, pid)
				}
			}
		}
	}
	return below, true
}

// awaitExit blocks until process pid has exited, without reaping it, so
// that its process group can be swept while its pid cannot be reused. It
// reports whether it could wait so.
func awaitExit(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err == nil
		}
	}
}

// KillOwnGroup kills this process's group, this process included: the last
// act of a worker whose parent died, which catches what its tasks started
// after KillDescendants looked.
func KillOwnGroup() { unix.Kill(0, unix.SIGKILL) }
