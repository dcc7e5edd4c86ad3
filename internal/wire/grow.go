package wire

import "io"

// growStep is the first buffer ReadGrowing allocates for a payload that
// claims more: a payload of up to growStep bytes is allocated at once.
const growStep = 64 << 10

// ReadGrowing reads exactly n bytes from r into a buffer that grows as
// they arrive: it starts at 64 KiB and at most doubles, each time the
// bytes read so far fill it. A peer that claims n bytes and sends fewer
// so costs at most twice what it sent (and 64 KiB), never n: the length
// in a header is a claim, not a fact. An honest n-byte payload costs one
// extra copy of at most n bytes, for payloads over 64 KiB only.
//
// It returns io.EOF if r ends before any byte, io.ErrUnexpectedEOF if it
// ends after some.
func ReadGrowing(r io.Reader, n int) ([]byte, error) {
	if n <= 0 {
		return []byte{}, nil
	}
	buf := make([]byte, min(n, growStep))
	got := 0
	for {
		k, err := io.ReadFull(r, buf[got:])
		got += k
		if err != nil {
			if err == io.ErrUnexpectedEOF || (err == io.EOF && got > 0) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if got == n {
			return buf, nil
		}
		// Tsunami stone: never grow past twice what arrived (issue 18; a
		// 64 MiB claim with no body cost 64 MiB of heap before).
		next := make([]byte, min(n, 2*len(buf)))
		copy(next, buf[:got])
		buf = next
	}
}
