package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
)

// Decoding cost.
//
// One byte of CBOR can decode to far more than a byte of Go values: an
// empty map (1 byte) into an any is a map of 48 bytes and more, a null
// into an element of a []struct{...} is the whole struct, a bignum tag
// is a big.Int and its words. Counting elements cannot bound that (the
// codec's MaxArrayElements and MaxMapPairs limit each array, not the
// sum, and know nothing of the element's type): 8 MiB received on a
// Conn[any], as an array of empty maps, once grew the heap by 526 MiB.
//
// So before the codec decodes bytes from outside the process, checkCost
// walks them (a pass over the heads of the data items, which allocates
// nothing) with the plan of the type they decode into, adds up what the
// codec will allocate for each item (the slices, maps, strings, boxed
// values and pointed-to values it makes, and the errors it makes of items
// of the wrong type), and refuses the bytes if that passes
// costLimit(len(data)). The figures below are upper bounds, measured on
// go1.26's runtime (maps grow by tables of groups of 8 slots, allocation
// rounds up to size classes); TestDecodeCostBound holds the codec to them
// over every adversarial shape, and FuzzDecodeAny over arbitrary input.
// Do not raise MaxArrayElements or MaxMapPairs in the belief that the
// frame limit bounds allocation: it does not (issue 18).

// CostFactor and CostFloor bound what decoding a message may allocate:
// CostFactor times its size, plus CostFloor (the fixed part of a small
// value: a map's table, a boxed value).
const (
	CostFactor = 8
	CostFloor  = 16 << 10
)

// costLimit is what decoding n bytes may allocate.
func costLimit(n int) int64 { return CostFactor*int64(n) + CostFloor }

// Figures of the cost model, in bytes.
const (
	costError   = 192 // an error made for an item of the wrong type, with its strings
	costBox     = 8   // a number or a float in an interface
	costBig     = 256 // a big.Int and its temporaries, besides its words
	costTimeLoc = 160 // a time's zone, for a time with an offset
	costTime    = 24  // a time.Time in an interface
	costTagBox  = 48  // a cbor.Tag in an interface
	costMapBase = 192 // a map's header, its table, and the decoder's key and value
	costUnknown = 96  // a struct's unknown key, which the decoder records
)

// checkCost returns an error if decoding data into a value of type t may
// allocate more than costLimit(len(data)), or if data is not one
// well-formed data item (of definite lengths, nested at most
// maxNesting deep).
func checkCost(data []byte, t reflect.Type) error {
	w := walker{data: data, limit: costLimit(len(data))}
	err := w.item(planFor(t), 0)
	switch {
	case err == errOverBudget:
		return &CostError{Size: len(data), Type: t, Limit: w.limit}
	case err != nil:
		return fmt.Errorf("%w: decoding %v: %v", ErrMalformed, t, err)
	case w.off != len(data):
		return fmt.Errorf("%w: decoding %v: %d bytes after the value", ErrMalformed, t, len(data)-w.off)
	}
	return nil
}

// CostError is the error of decoding a message whose value would take
// more memory than CostFactor times the message's size, plus CostFloor.
// It matches ErrMessageTooLarge.
type CostError struct {
	Size  int          // the message's size
	Type  reflect.Type // what it was to be decoded into
	Limit int64        // what it could have taken
}

func (e *CostError) Error() string {
	return fmt.Sprintf("%v: %d bytes of CBOR would decode to more than %d bytes of %v "+
		"(the limit is %d times the size, plus %d bytes: values such as many small maps or "+
		"nulls in a slice of large structs cost more; send them as fewer, larger values)",
		ErrMessageTooLarge, e.Size, e.Limit, e.Type, CostFactor, CostFloor)
}

// Is matches ErrMessageTooLarge.
func (e *CostError) Is(target error) bool { return target == ErrMessageTooLarge }

// ErrMessageTooLarge is wrapped or matched by the errors of messages over
// a size limit, and of messages whose decoded value would be over one.
var ErrMessageTooLarge = errors.New("mp: message too large")

var errOverBudget = errors.New("over budget")

// maxNesting is decMode's MaxNestedLevels: arrays, maps and tags.
const maxNesting = 64

type walker struct {
	data  []byte
	off   int
	cost  int64
	limit int64
}

// add adds n to the cost; it fails once the cost passes the limit.
func (w *walker) add(n int64) error {
	if n < 0 || n > w.limit-w.cost {
		return errOverBudget
	}
	w.cost += n
	return nil
}

// addN adds count times each, without overflow.
func (w *walker) addN(count uint64, each int64) error {
	if each > 0 && count > uint64(w.limit/each) {
		return errOverBudget
	}
	return w.add(alloc(int64(count) * each))
}

// alloc is what an allocation of n bytes takes: small size classes round
// up to 16 bytes, the others by at most an eighth; past 32 KiB, to pages
// of 8 KiB.
func alloc(n int64) int64 {
	switch {
	case n <= 0:
		return 0
	case n <= 8:
		return 8
	case n > 32<<10:
		return (n + 8191) &^ 8191
	}
	return (n + n/8 + 15) &^ 15
}

// allocData is alloc for bytes without pointers (a string's, a []byte's):
// under 16 bytes, the runtime packs them into shared blocks.
func allocData(n int64) int64 {
	if n < 16 {
		return n + 1 // and alignment, now and then
	}
	return alloc(n)
}

// head reads the head of the next data item.
func (w *walker) head() (major, info byte, arg uint64, err error) {
	if w.off >= len(w.data) {
		return 0, 0, 0, errors.New("the value ends early")
	}
	b := w.data[w.off]
	major, info = b>>5, b&31
	size := 1
	switch {
	case info < 24:
		arg = uint64(info)
	case info <= 27:
		size += 1 << (info - 24)
		if len(w.data)-w.off < size {
			return 0, 0, 0, errors.New("the value ends early")
		}
		h := w.data[w.off+1 : w.off+size]
		switch info {
		case 24:
			arg = uint64(h[0])
		case 25:
			arg = uint64(binary.BigEndian.Uint16(h))
		case 26:
			arg = uint64(binary.BigEndian.Uint32(h))
		default:
			arg = binary.BigEndian.Uint64(h)
		}
	default:
		return 0, 0, 0, fmt.Errorf("head 0x%02x (indefinite lengths are not used)", b)
	}
	w.off += size
	return major, info, arg, nil
}

// peek returns the major type of the next data item, and its first byte.
func (w *walker) peek() (major byte, first byte, err error) {
	if w.off >= len(w.data) {
		return 0, 0, errors.New("the value ends early")
	}
	return w.data[w.off] >> 5, w.data[w.off], nil
}

// str reads the head and the bytes of a string, of major type 2 or 3.
func (w *walker) str() ([]byte, error) {
	_, _, n, err := w.head()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(w.data)-w.off) {
		return nil, fmt.Errorf("a string of %d bytes, %d left", n, len(w.data)-w.off)
	}
	s := w.data[w.off : w.off+int(n)]
	w.off += int(n)
	return s, nil
}

// count reads the head of an array (or map, of pairs) and checks that
// the items it claims can be there: each takes a byte at least.
func (w *walker) count(pairs bool) (uint64, error) {
	_, _, n, err := w.head()
	if err != nil {
		return 0, err
	}
	left := uint64(len(w.data) - w.off)
	if n > left || (pairs && n > left/2) {
		return 0, fmt.Errorf("%d items claimed in %d bytes", n, left)
	}
	return n, nil
}

func nested(depth int) error {
	if depth > maxNesting {
		return fmt.Errorf("nested deeper than %d", maxNesting)
	}
	return nil
}

// skip reads one data item, which the decoder skips: it allocates nothing.
func (w *walker) skip(depth int) error {
	major, _, arg, err := w.head()
	if err != nil {
		return err
	}
	switch major {
	case 2, 3:
		if arg > uint64(len(w.data)-w.off) {
			return fmt.Errorf("a string of %d bytes, %d left", arg, len(w.data)-w.off)
		}
		w.off += int(arg)
	case 4, 5, 6:
		if err := nested(depth); err != nil {
			return err
		}
		n := arg // the items of an array, the keys and values of a map
		switch major {
		case 5:
			n *= 2
		case 6:
			n = 1 // the tag's content; arg is its number
		}
		if major != 6 && arg > uint64(len(w.data)-w.off) {
			return fmt.Errorf("%d items claimed in %d bytes", arg, len(w.data)-w.off)
		}
		for range n {
			if err := w.skip(depth + 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// skipCost skips one item and returns its size.
func (w *walker) skipCost(depth int) (int64, error) {
	start := w.off
	err := w.skip(depth)
	return int64(w.off - start), err
}

// isNull reports whether the next item is null or undefined.
func (w *walker) isNull() bool {
	return w.off < len(w.data) && (w.data[w.off] == 0xf6 || w.data[w.off] == 0xf7)
}

// stripSelfDescribed skips tag 55799, which the decoder strips.
func (w *walker) stripSelfDescribed() {
	for len(w.data)-w.off >= 3 && w.data[w.off] == 0xd9 && w.data[w.off+1] == 0xd9 && w.data[w.off+2] == 0xf7 {
		w.off += 3
	}
}

// SplitArray returns the items of data, an encoded array, as slices of
// data: without decoding or copying them, so that splitting costs a
// slice header (24 bytes) an item, whatever the items are.
func SplitArray(data []byte) ([]RawMessage, error) {
	w := walker{data: data}
	major, _, err := w.peek()
	if err == nil && major != 4 {
		err = fmt.Errorf("not an array (major type %d)", major)
	}
	var n uint64
	if err == nil {
		n, err = w.count(false)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: splitting an array: %v", ErrMalformed, err)
	}
	items := make([]RawMessage, n)
	for i := range items {
		start := w.off
		if err := w.skip(1); err != nil {
			return nil, fmt.Errorf("%w: item %d of an array: %v", ErrMalformed, i, err)
		}
		items[i] = RawMessage(data[start:w.off:w.off])
	}
	if w.off != len(data) {
		return nil, fmt.Errorf("%w: %d bytes after an array", ErrMalformed, len(data)-w.off)
	}
	return items, nil
}
