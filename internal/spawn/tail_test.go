package spawn

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// keptTail is what a tailBuffer of size n must return after all was written
// to it, however it was cut into writes: all of it if it fits in 2n bytes,
// or else its first and last n bytes around a marker that counts the rest.
func keptTail(all []byte, n int) []byte {
	if len(all) <= 2*n {
		return bytes.Clone(all)
	}
	out := bytes.Clone(all[:n])
	out = fmt.Appendf(out, "\n... omitting %d bytes ...\n", len(all)-2*n)
	return append(out, all[len(all)-n:]...)
}

// pattern returns size bytes that differ at every position mod 251, so
// that bytes kept from the wrong place, or in the wrong order, show.
func pattern(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte('!' + i%251%90)
	}
	return b
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		n      int
		writes []string
		want   string
	}{
		{name: "nothing", n: 4, writes: nil, want: ""},
		{name: "empty write", n: 4, writes: []string{""}, want: ""},
		{name: "small write", n: 4, writes: []string{"ab"}, want: "ab"},
		{name: "small writes", n: 4, writes: []string{"a", "b", "c"}, want: "abc"},
		{name: "exactly n", n: 4, writes: []string{"abcd"}, want: "abcd"},
		{name: "exactly n in pieces", n: 4, writes: []string{"ab", "cd"}, want: "abcd"},
		{name: "n plus one", n: 4, writes: []string{"abcde"}, want: "abcde"},
		{name: "exactly 2n", n: 4, writes: []string{"abcdefgh"}, want: "abcdefgh"},
		{name: "exactly 2n in pieces", n: 4, writes: []string{"abc", "def", "gh"}, want: "abcdefgh"},
		{name: "2n plus one", n: 4, writes: []string{"abcdefghi"}, want: "abcd\n... omitting 1 bytes ...\nfghi"},
		{name: "prefix and suffix", n: 4, writes: []string{"0123456789"}, want: "0123\n... omitting 2 bytes ...\n6789"},
		{name: "prefix and suffix in pieces", n: 4, writes: []string{"01", "2345", "67", "89"}, want: "0123\n... omitting 2 bytes ...\n6789"},
		{name: "ring wraps once", n: 4, writes: []string{"0123", "4567", "89"}, want: "0123\n... omitting 2 bytes ...\n6789"},
		{name: "ring wraps by single bytes", n: 3, writes: strings.Split("abcdefghijk", ""), want: "abc\n... omitting 5 bytes ...\nijk"},
		{name: "write straddles the ring end", n: 4, writes: []string{"0123", "456", "789a"}, want: "0123\n... omitting 3 bytes ...\n789a"},
		{name: "huge write", n: 4, writes: []string{strings.Repeat("x", 1000) + "tail"}, want: "xxxx\n... omitting 996 bytes ...\ntail"},
		{name: "huge write after a full suffix", n: 4, writes: []string{"01234567", "abcdefghijkl"}, want: "0123\n... omitting 12 bytes ...\nijkl"},
		{name: "huge write after a partial suffix", n: 4, writes: []string{"012345", "abcdefghijkl"}, want: "0123\n... omitting 10 bytes ...\nijkl"},
		{name: "huge write in the middle of the ring", n: 4, writes: []string{"0123456789", "abcdefghijkl", "mn"}, want: "0123\n... omitting 16 bytes ...\nklmn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newTailBuffer(tt.n)
			var all []byte
			for _, w := range tt.writes {
				n, err := b.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q): got %d, %v; want %d, nil", w, n, err, len(w))
				}
				all = append(all, w...)
			}
			got := b.Bytes()
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if model := keptTail(all, tt.n); !bytes.Equal(got, model) {
				t.Errorf("got %q, want %q (the model)", got, model)
			}
			if again := b.Bytes(); !bytes.Equal(again, got) {
				t.Errorf("Bytes again: got %q, want %q", again, got)
			}
		})
	}
}

// TestTailBufferWriteSizes cuts the same stream into writes of every size
// from 1 to past 2n, so that writes start and end at every position of the
// ring, and compares with the model.
func TestTailBufferWriteSizes(t *testing.T) {
	t.Parallel()
	const n = 64
	for _, total := range []int{0, 1, n - 1, n, n + 1, 2*n - 1, 2 * n, 2*n + 1, 3 * n, 10*n + 7, 1000 * n} {
		all := pattern(total)
		for size := 1; size <= 2*n+3; size++ {
			b := newTailBuffer(n)
			for rest := all; len(rest) > 0; {
				k := min(size, len(rest))
				if m, err := b.Write(rest[:k]); m != k || err != nil {
					t.Fatalf("total %d, writes of %d: Write: got %d, %v; want %d, nil", total, size, m, err, k)
				}
				rest = rest[k:]
			}
			if got, want := b.Bytes(), keptTail(all, n); !bytes.Equal(got, want) {
				t.Fatalf("total %d, writes of %d: got %q, want %q", total, size, got, want)
			}
		}
	}
}

// TestTailBufferReturnsACopy checks that Bytes does not alias the buffer,
// nor Write the caller's slice.
func TestTailBufferReturnsACopy(t *testing.T) {
	t.Parallel()
	b := newTailBuffer(4)
	p := []byte("0123456789")
	b.Write(p)
	got := b.Bytes()
	want := string(got)
	clear(p)
	b.Write([]byte("abcdefgh"))
	if string(got) != want {
		t.Errorf("an earlier Bytes: got %q after more writes, want %q", got, want)
	}
	if got := string(b.Bytes()); got != "0123\n... omitting 10 bytes ...\nefgh" {
		t.Errorf("got %q, want the prefix written before the caller cleared its slice", got)
	}
}

// TestTailBufferConcurrent has several goroutines write whole lines at
// once (run it with -race). Every write is kept whole or cut at the prefix
// or suffix boundary, and every byte is counted, kept or omitted.
func TestTailBufferConcurrent(t *testing.T) {
	t.Parallel()
	const (
		writers = 8
		lines   = 500
		lineLen = len("w0-l0000\n")
		n       = 16 * lineLen // a whole number of lines
	)
	b := newTailBuffer(n)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for l := range lines {
				line := fmt.Sprintf("w%d-l%04d\n", w, l)
				if k, err := b.Write([]byte(line)); k != len(line) || err != nil {
					t.Errorf("Write: got %d, %v; want %d, nil", k, err, len(line))
				}
				if l%50 == 0 {
					b.Bytes() // a reader racing the writers
				}
			}
		})
	}
	wg.Wait()

	got := string(b.Bytes())
	total := writers * lines * lineLen
	marker := fmt.Sprintf("\n... omitting %d bytes ...\n", total-2*n)
	prefix, suffix, ok := strings.Cut(got, marker)
	if !ok {
		t.Fatalf("got %q, want the marker %q", got, marker)
	}
	if len(prefix) != n || len(suffix) != n {
		t.Fatalf("got a prefix of %d bytes and a suffix of %d, want %d each", len(prefix), len(suffix), n)
	}
	// Every write is one line and n is a whole number of lines, so both
	// ends hold whole lines; each writer's lines come in its order.
	for part, s := range map[string]string{"prefix": prefix, "suffix": suffix} {
		last := map[int]int{}
		for line := range strings.Lines(s) {
			var w, l int
			if k, err := fmt.Sscanf(line, "w%d-l%04d\n", &w, &l); k != 2 || err != nil || len(line) != lineLen {
				t.Errorf("%s: got line %q, want a whole line written at once", part, line)
				continue
			}
			if prev, seen := last[w]; seen && l <= prev {
				t.Errorf("%s: got line %d of writer %d after its line %d, want them in order", part, l, w, prev)
			}
			last[w] = l
		}
	}
	if !strings.HasPrefix(prefix, "w") || !strings.Contains(prefix, "-l0000\n") {
		t.Errorf("prefix: got %q, want the first lines written", prefix)
	}
	if !strings.Contains(suffix, fmt.Sprintf("-l%04d\n", lines-1)) {
		t.Errorf("suffix: got %q, want the last lines written", suffix)
	}
}
