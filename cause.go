package mp

import "fmt"

// A cause is why a pool's worker was replaced, or why the pool stopped a
// task: its String is the key Stats.RestartCauses counts it under.
type cause uint8

const (
	causeNone          cause = iota
	causeExit                // the worker exited by itself
	causeSignal              // a signal the pool did not send ended it
	causeTimeout             // a task ran past its timeout
	causeCancel              // a task's call was cancelled, and the task did not return within the grace
	causeMemory              // the worker went over WorkerMemoryLimit
	causeProtocol            // the worker sent what is not a frame of the protocol
	causeMaxTasks            // retired: it ran MaxTasksPerWorker tasks
	causeRecycleMemory       // retired: it reported more than MaxWorkerMemory after a task
)

var causeNames = [...]string{
	causeNone:          "",
	causeExit:          "exit",
	causeSignal:        "signal",
	causeTimeout:       "timeout",
	causeCancel:        "cancel",
	causeMemory:        "memory",
	causeProtocol:      "protocol",
	causeMaxTasks:      "max-tasks",
	causeRecycleMemory: "recycle-memory",
}

func (c cause) String() string {
	if int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// killReason is why the pool killed a worker: a cause, and for
// causeProtocol what was wrong with what the worker sent.
type killReason struct {
	cause cause
	err   error // for causeProtocol
}

// String is the kill's reason as an ExitError's Reason says it.
func (k killReason) String() string {
	if k.cause == causeProtocol && k.err != nil {
		return "protocol error: " + trimPrefix(k.err)
	}
	return k.cause.String()
}
