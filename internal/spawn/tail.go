package spawn

import (
	"fmt"
	"sync"
)

// tailBuffer keeps the first and last n bytes written to it, as os/exec's
// prefixSuffixSaver does, so that the start of a panic message and the end
// of a long stack trace both survive.
type tailBuffer struct {
	mu      sync.Mutex
	n       int
	prefix  []byte
	suffix  []byte // a ring once full
	pos     int    // next write position in suffix once full
	skipped int64
}

func newTailBuffer(n int) *tailBuffer { return &tailBuffer{n: n} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	total := len(p)
	if k := min(b.n-len(b.prefix), len(p)); k > 0 {
		b.prefix = append(b.prefix, p[:k]...)
		p = p[k:]
	}
	if len(p) > b.n {
		b.skipped += int64(len(p) - b.n)
		p = p[len(p)-b.n:]
	}
	for len(p) > 0 {
		if len(b.suffix) < b.n {
			k := min(b.n-len(b.suffix), len(p))
			b.suffix = append(b.suffix, p[:k]...)
			p = p[k:]
			continue
		}
		k := copy(b.suffix[b.pos:], p)
		b.skipped += int64(k)
		b.pos = (b.pos + k) % b.n
		p = p[k:]
	}
	return total, nil
}

// Bytes returns the prefix, a marker for what was left out, and the suffix.
func (b *tailBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]byte(nil), b.prefix...)
	if b.skipped > 0 {
		out = fmt.Appendf(out, "\n... omitting %d bytes ...\n", b.skipped)
	}
	out = append(out, b.suffix[b.pos:]...)
	return append(out, b.suffix[:b.pos]...)
}
