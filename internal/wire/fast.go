package wire

import (
	"encoding/binary"
	"math"
	"reflect"
	"unicode/utf8"
)

// Fast paths of the codec for the types most calls carry: integers,
// floats, strings and booleans, and slices of them. They write the very
// bytes the general codec writes (TestFastMatchesCodec checks it, value by
// value and type by type), without reflection or a growing buffer; they
// read what the general codec would accept into the same values, and leave
// anything else (another encoding of a value, a malformed input) to it, so
// that errors are the general codec's.

// marshalFast encodes v if its type has a fast path.
func marshalFast(v any) ([]byte, bool) {
	switch v := v.(type) {
	case int:
		return appendInt(nil, int64(v)), true
	case int64:
		return appendInt(nil, v), true
	case int32:
		return appendInt(nil, int64(v)), true
	case uint64:
		return appendHead(nil, 0, v), true
	case float64:
		if !finite(v) {
			return nil, false // the codec writes these as half floats
		}
		return appendFloat64(nil, v), true
	case string:
		return appendString(nil, v), true
	case bool:
		return appendBool(nil, v), true
	case []int:
		return appendSlice(v, 9, func(b []byte, x int) []byte { return appendInt(b, int64(x)) }), true
	case []int64:
		return appendSlice(v, 9, appendInt), true
	case []int32:
		return appendSlice(v, 5, func(b []byte, x int32) []byte { return appendInt(b, int64(x)) }), true
	case []uint64:
		return appendSlice(v, 9, func(b []byte, x uint64) []byte { return appendHead(b, 0, x) }), true
	case []float64:
		for _, x := range v {
			if !finite(x) {
				return nil, false
			}
		}
		return appendSlice(v, 9, appendFloat64), true
	case []string:
		size := 0
		for _, s := range v {
			size += 9 + len(s)
		}
		return appendSliceSized(v, size, appendString), true
	case []bool:
		return appendSlice(v, 1, appendBool), true
	}
	return nil, false
}

func appendSlice[E any](v []E, per int, add func([]byte, E) []byte) []byte {
	return appendSliceSized(v, per*len(v), add)
}

func appendSliceSized[E any](v []E, size int, add func([]byte, E) []byte) []byte {
	if v == nil {
		return []byte{0xf6} // null, as NilContainerAsNull has it
	}
	b := appendHead(make([]byte, 0, 9+size), 4, uint64(len(v)))
	for _, x := range v {
		b = add(b, x)
	}
	return b
}

// appendHead appends the head of a data item of major type major and
// argument n, in its shortest form.
func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= math.MaxUint8:
		return append(b, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

func appendInt(b []byte, x int64) []byte {
	if x >= 0 {
		return appendHead(b, 0, uint64(x))
	}
	return appendHead(b, 1, uint64(-1-x))
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func appendFloat64(b []byte, x float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xfb), math.Float64bits(x))
}

func appendString(b []byte, s string) []byte {
	return append(appendHead(b, 3, uint64(len(s))), s...)
}

func appendBool(b []byte, x bool) []byte {
	if x {
		return append(b, 0xf5)
	}
	return append(b, 0xf4)
}

// unmarshalFast decodes data into *p if p's type has a fast path and data
// is in the form that path reads; otherwise it returns false, and the
// general codec decodes it.
func unmarshalFast(data []byte, p any) bool {
	switch p := p.(type) {
	case *int:
		x, ok := readWhole(data, readInt)
		if ok && x == int64(int(x)) {
			*p = int(x)
			return true
		}
	case *int64:
		x, ok := readWhole(data, readInt)
		if ok {
			*p = x
			return true
		}
	case *float64:
		x, ok := readWhole(data, readFloat64)
		if ok {
			*p = x
			return true
		}
	case *string:
		x, ok := readWhole(data, readString)
		if ok {
			*p = x
			return true
		}
	case *[]int:
		return readSlice(data, p, func(b []byte) (int, []byte, bool) {
			x, rest, ok := readInt(b)
			return int(x), rest, ok && x == int64(int(x))
		})
	case *[]int64:
		return readSlice(data, p, readInt)
	case *[]float64:
		return readSlice(data, p, readFloat64)
	case *[]string:
		// An empty string takes a byte, and 16 as a string: the general
		// path bounds that.
		return checkCost(data, typeStrings) == nil && readSlice(data, p, readString)
	}
	return false
}

var typeStrings = reflect.TypeFor[[]string]()

func readWhole[E any](data []byte, read func([]byte) (E, []byte, bool)) (E, bool) {
	x, rest, ok := read(data)
	return x, ok && len(rest) == 0
}

// readSlice reads an array of definite length into *p; null is a nil slice.
func readSlice[E any](data []byte, p *[]E, read func([]byte) (E, []byte, bool)) bool {
	if len(data) == 1 && data[0] == 0xf6 {
		*p = nil
		return true
	}
	n, rest, ok := readHead(data, 4)
	// Every element takes at least a byte: a count over what is left is
	// malformed, and the general codec says so.
	if !ok || n > uint64(len(rest)) {
		return false
	}
	out := make([]E, n)
	for i := range out {
		if out[i], rest, ok = read(rest); !ok {
			return false
		}
	}
	if len(rest) != 0 {
		return false
	}
	*p = out
	return true
}

// readHead reads the head of a data item of major type major.
func readHead(b []byte, major byte) (n uint64, rest []byte, ok bool) {
	if len(b) == 0 || b[0]>>5 != major {
		return 0, nil, false
	}
	info := b[0] & 31
	switch {
	case info < 24:
		return uint64(info), b[1:], true
	case info == 24 && len(b) >= 2:
		return uint64(b[1]), b[2:], true
	case info == 25 && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), b[3:], true
	case info == 26 && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), b[5:], true
	case info == 27 && len(b) >= 9:
		return binary.BigEndian.Uint64(b[1:]), b[9:], true
	}
	return 0, nil, false
}

func readInt(b []byte) (int64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	major := b[0] >> 5
	if major > 1 {
		return 0, nil, false
	}
	n, rest, ok := readHead(b, major)
	if !ok || n > math.MaxInt64 {
		return 0, nil, false
	}
	if major == 1 {
		return -1 - int64(n), rest, true
	}
	return int64(n), rest, true
}

func readFloat64(b []byte) (float64, []byte, bool) {
	if len(b) < 9 || b[0] != 0xfb {
		return 0, nil, false // other widths and integers: the general codec
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b[1:])), b[9:], true
}

func readString(b []byte) (string, []byte, bool) {
	n, rest, ok := readHead(b, 3)
	if !ok || n > uint64(len(rest)) {
		return "", nil, false
	}
	// Text must be valid UTF-8: the general codec checks it, and says so.
	s := string(rest[:n])
	if !validUTF8(s) {
		return "", nil, false
	}
	return s, rest[n:], true
}

func validUTF8(s string) bool { return utf8.ValidString(s) }
