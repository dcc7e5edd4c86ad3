package wire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestReadGrowing(t *testing.T) {
	for _, n := range []int{0, 1, growStep - 1, growStep, growStep + 1, 5*growStep + 3} {
		src := bytes.Repeat([]byte{7}, n)
		got, err := ReadGrowing(bytes.NewReader(append(src, 1, 2, 3)), n)
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("n=%d: got %d bytes, %v; want %d bytes", n, len(got), err, n)
		}
	}
	if _, err := ReadGrowing(bytes.NewReader(nil), 10); err != io.EOF {
		t.Errorf("nothing sent: got %v, want io.EOF", err)
	}
	if _, err := ReadGrowing(bytes.NewReader(make([]byte, 3*growStep)), 4*growStep); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut short: got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestReadGrowingClaimCostsWhatArrived(t *testing.T) {
	// A claim of 64 MiB followed by 100 KiB allocates a few hundred KiB.
	body := make([]byte, 100<<10)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ReadGrowing(bytes.NewReader(body), 64<<20)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("a 64 MiB claim with 100 KiB sent allocated %d bytes, want under 1 MiB", grew)
	}
}
