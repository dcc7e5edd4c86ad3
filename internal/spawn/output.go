package spawn

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// outputMu serializes every write to a writer the user gave for workers'
// output. Workers run at once, each with its own copying goroutine, and
// users pass the same writer to all of them (a bytes.Buffer, a log file,
// one writer for Stdout and Stderr, as os/exec allows): without one lock,
// those writes race and output is lost. One lock for all writers is
// simplest and costs nothing that matters next to a pipe read.
var outputMu sync.Mutex

// maxLine is how much of a line without a newline a lineWriter holds back
// before it writes it anyway.
const maxLine = 64 << 10

// lineWriter passes a worker's output stream to a shared writer in whole
// lines, so that lines of different workers never interleave inside a line.
type lineWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte // the start of a line not yet written
}

// newOutput returns what a worker's stream should be written to: w itself
// if it is a file (the child writes to it directly, and the kernel keeps
// each write whole), or a lineWriter in front of it.
func newOutput(w io.Writer) (io.Writer, *lineWriter) {
	if _, ok := w.(*os.File); ok {
		return w, nil
	}
	lw := &lineWriter{w: w}
	return lw, lw
}

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
	outputMu.Lock()
	defer outputMu.Unlock()
	_, err := lw.w.Write(b)
	return err
}
