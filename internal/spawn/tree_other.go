//go:build unix && !linux

package spawn

// killTree kills the process group that pid leads. Without /proc, the
// descendants that left the group cannot be found.
func killTree(pid int) error { return killGroup(pid) }

// KillDescendants does nothing here: without /proc a worker cannot find
// its descendants, and it cannot signal its own group without dying. Its
// group is swept by the parent when the worker exits, if the parent lives.
func KillDescendants() {}

// awaitExit returns false at once: the group is swept after the process
// is reaped.
func awaitExit(pid int) bool { return false }

// KillOwnGroup does nothing here: there is no parent-death signal to act on.
func KillOwnGroup() {}
