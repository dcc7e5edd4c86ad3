package mp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/go-mp/mp"
)

// craft describes adversarial CBOR of about Size bytes: a value that
// decodes to many times its size (issue 18), or, for the shape "bytes",
// a byte string of the same size, the baseline.
type craft struct {
	Shape string
	Size  int
}

func (c craft) bytes() []byte {
	array := func(item []byte) []byte {
		n := c.Size / len(item)
		b := binary.BigEndian.AppendUint32([]byte{0x9a}, uint32(n))
		return append(b, bytes.Repeat(item, n)...)
	}
	switch c.Shape {
	case "empty maps":
		return array([]byte{0xa0})
	case "bignums":
		return array([]byte{0xc3, 0x41, 0xff})
	case "empty arrays":
		return array([]byte{0x80})
	case "deep": // past the 64 levels the codec takes
		return array(append(bytes.Repeat([]byte{0x81}, 70), 0xf6))
	}
	return append(binary.BigEndian.AppendUint32([]byte{0x5a}, uint32(c.Size)), make([]byte, c.Size)...)
}

var adversarial = []string{"empty maps", "bignums", "empty arrays", "deep"}

// decodeCrafted returns the crafted CBOR as its result, as it is.
var decodeCrafted = mp.Register("test.decode.crafted", func(ctx context.Context, c craft) (any, error) {
	return cbor.RawMessage(c.bytes()), nil
})

// totalAlloc returns what f allocated on the heap, in every goroutine.
func totalAlloc(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// checkBounded runs receive for each adversarial shape of 1 and 8 MiB,
// and for a byte string of the same size, and checks that the shape
// costs at most 8 times its size (plus 16 KiB) more than the byte string
// (which costs what the transport costs), and fails with an error that
// matches ErrMessageTooLarge or says it is malformed.
func checkBounded(t *testing.T, receive func(c craft) error) {
	for _, size := range []int{1 << 20, 8 << 20} {
		var baseErr error
		base := totalAlloc(func() { baseErr = receive(craft{Shape: "bytes", Size: size}) })
		if baseErr != nil {
			t.Fatalf("%d bytes of a byte string: %v", size, baseErr)
		}
		for _, shape := range adversarial {
			var err error
			got := totalAlloc(func() { err = receive(craft{Shape: shape, Size: size}) })
			if limit := base + 8*int64(size) + 16<<10; got > limit {
				t.Errorf("%s, %d bytes: allocated %d bytes (%.1f times its size), want at most %d (%d for the byte string)",
					shape, size, got, float64(got)/float64(size), limit, base)
			}
			if err == nil || !errors.Is(err, mp.ErrMessageTooLarge) && shape != "deep" {
				t.Errorf("%s, %d bytes: got %v, want an error matching mp.ErrMessageTooLarge", shape, size, err)
			}
		}
	}
}

func TestConnDecodeBounded(t *testing.T) {
	a, b, err := mp.Pipe[any]()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	ctx := bounded(t, 120*time.Second)
	checkBounded(t, func(c craft) error {
		sent := make(chan error, 1)
		go func() { sent <- a.Send(ctx, cbor.RawMessage(c.bytes())) }()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := b.Recv(ctx)
		if err := <-sent; err != nil {
			t.Fatalf("Send: %v", err)
		}
		runtime.KeepAlive(v)
		return err
	})
}

func TestPoolResultDecodeBounded(t *testing.T) {
	p := newPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 120*time.Second)
	checkBounded(t, func(c craft) error {
		v, err := mp.Apply(ctx, p, decodeCrafted, c)
		runtime.KeepAlive(v)
		return err
	})
}

// TestBackendOutcomeDecodeBounded sends the results through a backend:
// the outcome a worker host returns is decoded as natspool's are.
func TestBackendOutcomeDecodeBounded(t *testing.T) {
	p, _ := newLoopbackPool(t, mp.PoolOptions{Workers: 1})
	ctx := bounded(t, 120*time.Second)
	checkBounded(t, func(c craft) error {
		v, err := mp.Apply(ctx, p, decodeCrafted, c)
		runtime.KeepAlive(v)
		return err
	})
}
