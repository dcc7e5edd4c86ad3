// Package rawio reads and writes the Unix socket and the pipe between a
// parent and a worker with system calls that bypass the Go scheduler's
// bookkeeping of system calls, where it can (Linux).
//
// A Go process wakes its system monitor thread (sysmon) at the first
// blocking-capable system call after all its goroutines were idle. A
// parent and a worker that pass one task back and forth are idle between
// every message, so each message woke a third and a fourth thread, on a
// machine whose two cores the two processes need: on two cores a round
// trip took 36 µs that way and 21 µs without those wake-ups, in one
// measurement. A read or a write of a non-blocking socket never blocks in
// the kernel, so it does not need that bookkeeping; the wait for the
// socket to be ready is still the runtime's network poller's.
//
// The monitor also preempts goroutines that run for long, and a worker
// that runs a long task relies on that to read its parent's cancel. So
// that it still runs, the package keeps it from sleeping long while
// messages flow: a timer, armed while any Conn is in use, fires every
// KeepAwake and bounds the monitor's sleep; after a KeepAwake with no
// message the timer stops, and the next message wakes the monitor with
// an ordinary system call.
//
// A read that finds nothing to read polls the socket for a few
// microseconds (SpinFor, Linux) before it waits: a peer that answers
// quickly is read without either side's thread falling asleep and being
// woken. Connections whose polling keeps finding nothing stop polling.
package rawio

import "time"

// KeepAwake bounds how long the system monitor sleeps while messages flow.
const KeepAwake = 10 * time.Millisecond
