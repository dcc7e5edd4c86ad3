package spawn

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// When a program runs as PID 1 (a container without an init), every
// orphan on the system is reparented to it, and nobody else reaps them: each
// process a task started and that outlived its killed worker would stay a
// zombie for good. So a parent that is PID 1 reaps the orphans of its
// workers' process groups, and no other process: its own children belong
// to whoever started them (exec.Cmd.Wait), and reaping one of them would
// steal its exit status.
var orphans struct {
	once   sync.Once
	mu     sync.Mutex
	groups map[int]bool // worker process groups (a worker's pid) whose orphans are ours to reap
	killed map[int]bool // descendants of workers that left their groups, killed by killTree
	live   map[int]bool // workers themselves, reaped by their exec.Cmd
}

// adopt records a started worker, for the reaper of a PID 1 parent.
func adopt(pid int) {
	if os.Getpid() != 1 {
		return
	}
	orphans.once.Do(startReaper)
	orphans.mu.Lock()
	orphans.groups[pid] = true
	orphans.live[pid] = true
	orphans.mu.Unlock()
}

// disown records that a worker was reaped; its group's orphans are still
// reaped until none is left.
func disown(pid int) {
	if os.Getpid() != 1 {
		return
	}
	orphans.mu.Lock()
	delete(orphans.live, pid)
	orphans.mu.Unlock()
	reapOrphans()
}

func startReaper() {
	orphans.groups = make(map[int]bool)
	orphans.killed = make(map[int]bool)
	orphans.live = make(map[int]bool)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		// SIGCHLD signals coalesce: also look every few seconds.
		tick := time.NewTicker(5 * time.Second)
		for {
			select {
			case <-sigs:
			case <-tick.C:
			}
			reapOrphans()
		}
	}()
}

// reapOrphans reaps the zombie children of this process that belong to a
// worker's process group, and forgets the groups of reaped workers that
// have no process left.
func reapOrphans() {
	orphans.mu.Lock()
	defer orphans.mu.Unlock()
	me := os.Getpid()
	used := make(map[int]bool)
	for _, p := range processes() {
		used[p.pgrp] = true
		ours := orphans.groups[p.pgrp] || orphans.killed[p.pid]
		if p.ppid != me || !ours || orphans.live[p.pid] || !p.zombie {
			continue
		}
		var ws unix.WaitStatus
		unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
		delete(orphans.killed, p.pid)
	}
	for g := range orphans.groups {
		if !used[g] && !orphans.live[g] {
			delete(orphans.groups, g)
		}
	}
}

// adoptKilled records descendants of a worker that killTree killed outside
// the worker's group, for the reaper of a PID 1 parent: they die as its
// children. (A pid that is never seen as our zombie stays recorded; there
// are few, one per such descendant killed.)
func adoptKilled(pids []int) {
	if os.Getpid() != 1 || len(pids) == 0 {
		return
	}
	orphans.once.Do(startReaper)
	orphans.mu.Lock()
	for _, pid := range pids {
		orphans.killed[pid] = true
	}
	orphans.mu.Unlock()
}
