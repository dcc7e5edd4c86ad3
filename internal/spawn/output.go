package spawn

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"sync"
)

// Every write to a writer the user gave for workers' output holds that
// writer's lock. Workers run at once, each with its own copying goroutine,
// and users pass the same writer to all of them (a bytes.Buffer, a log
// file, one writer for Stdout and Stderr, as os/exec allows): without one
// lock per writer, those writes race and output is lost. A writer that is
// not comparable (a struct value holding a slice) cannot be told apart
// from another, and gets a lock of its own per stream.
var writerLocks struct {
	mu    sync.Mutex
	locks map[io.Writer]*writerLock
}

type writerLock struct {
	sync.Mutex
	key  io.Writer // nil if not shared through writerLocks
	refs int
}

// lockFor returns the lock of w, to be released when no longer used.
func lockFor(w io.Writer) *writerLock {
	if !reflect.TypeOf(w).Comparable() {
		return &writerLock{}
	}
	writerLocks.mu.Lock()
	defer writerLocks.mu.Unlock()
	if writerLocks.locks == nil {
		writerLocks.locks = make(map[io.Writer]*writerLock)
	}
	l := writerLocks.locks[w]
	if l == nil {
		l = &writerLock{key: w}
		writerLocks.locks[w] = l
	}
	l.refs++
	return l
}

func (l *writerLock) release() {
	if l.key == nil {
		return
	}
	writerLocks.mu.Lock()
	defer writerLocks.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(writerLocks.locks, l.key)
	}
}

// maxLine is how much of a line without a newline a lineWriter holds back
// before it writes it anyway.
const maxLine = 64 << 10

// lineWriter passes a worker's output stream to a shared writer in whole
// lines, so that lines of different workers never interleave inside a line.
type lineWriter struct {
	mu   sync.Mutex
	w    io.Writer
	lock *writerLock // w's
	buf  []byte      // the start of a line not yet written
}

// newOutput returns what a worker's stream should be written to: w itself
// if it is a file and the stream need not pass through mp (the child writes
// to it directly, and the kernel keeps each write whole), or a lineWriter
// in front of it.
func newOutput(w io.Writer, piped bool) (io.Writer, *lineWriter) {
	if _, ok := w.(*os.File); ok && !piped {
		return w, nil
	}
	lw := &lineWriter{w: w, lock: lockFor(w)}
	return lw, lw
}

func (lw *lineWriter) release() { lw.lock.release() }

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	n := len(p)
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 && len(lw.buf)+len(p) < maxLine {
		lw.buf = append(lw.buf, p...)
		return n, nil
	}
	var out []byte
	if i < 0 {
		out, p = append(lw.buf, p...), nil
	} else if len(lw.buf) > 0 {
		out, p = append(lw.buf, p[:i+1]...), p[i+1:]
	} else {
		out, p = p[:i+1], p[i+1:]
	}
	err := lw.emit(out)
	lw.buf = append(lw.buf[:0], p...)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Flush writes what is left of an unfinished last line.
func (lw *lineWriter) Flush() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.buf) == 0 {
		return nil
	}
	err := lw.emit(lw.buf)
	lw.buf = lw.buf[:0]
	return err
}

func (lw *lineWriter) emit(b []byte) error {
	lw.lock.Lock()
	defer lw.lock.Unlock()
	_, err := lw.w.Write(b)
	return err
}
