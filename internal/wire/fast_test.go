package wire

import (
	"bytes"
	"math"
	"reflect"
	"testing"
)

// TestFastMatchesCodec checks that every fast path writes the very bytes
// of the general codec, and reads them back as it does.
func TestFastMatchesCodec(t *testing.T) {
	t.Parallel()
	ints := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -24, -25, -256, -257, -65536, -65537, math.MinInt32, math.MinInt64}
	var asInt []int
	var as32 []int32
	for _, x := range ints {
		asInt = append(asInt, int(x))
		if x == int64(int32(x)) {
			as32 = append(as32, int32(x))
		}
	}
	values := []any{
		int(0), int(-1), int(1 << 40), int64(math.MinInt64), int32(-5), uint64(math.MaxUint64), uint64(24),
		0.0, -0.0, 1.5, math.Inf(1), math.Inf(-1), math.NaN(), math.MaxFloat64, math.SmallestNonzeroFloat64,
		"", "a", "héllo", string(make([]byte, 300)), true, false,
		asInt, ints, as32, []uint64{0, math.MaxUint64}, []float64{0, -1.25, math.Pi}, []string{"", "x", "yz"},
		[]bool{true, false}, []int(nil), []int{}, []string(nil), []float64{}, make([]int, 70000),
	}
	for _, v := range values {
		want, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := marshalFast(v)
		if f, isFloat := v.(float64); isFloat && !finite(f) {
			if ok {
				t.Errorf("%v: the fast path took a value the codec writes as a half float", f)
			}
			fast = want
		} else if !ok {
			t.Errorf("%T has no fast path", v)
			continue
		}
		if !bytes.Equal(fast, want) {
			t.Errorf("%T %v: fast path wrote % x, the codec % x", v, clipped(v), fast, want)
		}
		// Read back, into a fresh value of the same type, both ways.
		typ := reflect.TypeOf(v)
		viaFast, viaCodec := reflect.New(typ), reflect.New(typ)
		if err := decMode.Unmarshal(want, viaCodec.Interface()); err != nil {
			t.Fatal(err)
		}
		if unmarshalFast(want, viaFast.Interface()) && !reflect.DeepEqual(viaFast.Elem().Interface(), viaCodec.Elem().Interface()) {
			if f, ok := v.(float64); !ok || !math.IsNaN(f) {
				t.Errorf("%T %v: fast path read %v, the codec %v", v, clipped(v), clipped(viaFast.Elem().Interface()), clipped(viaCodec.Elem().Interface()))
			}
		}
	}
}

// TestFastLeavesTheRest checks that the fast paths refuse what they do not
// read exactly as the codec does, so that the codec decides.
func TestFastLeavesTheRest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
		into any
	}{
		{"int as float", []byte{0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, new(int)},
		{"float in 4 bytes", []byte{0xfa, 0x3f, 0xc0, 0, 0}, new(float64)},
		{"int past int64", []byte{0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, new(int64)},
		{"trailing byte", []byte{0x01, 0x02}, new(int)},
		{"array longer than data", []byte{0x9a, 0xff, 0xff, 0xff, 0xff, 0x01}, new([]int)},
		{"indefinite array", []byte{0x9f, 0x01, 0xff}, new([]int)},
		{"bad utf-8", []byte{0x61, 0xff}, new(string)},
		{"string in array cut short", []byte{0x81, 0x65, 'a'}, new([]string)},
		{"empty", nil, new(int)},
	}
	for _, tt := range tests {
		if unmarshalFast(tt.data, tt.into) {
			t.Errorf("%s: the fast path read % x", tt.name, tt.data)
		}
	}
}

func clipped(v any) any {
	if s, ok := v.(string); ok && len(s) > 20 {
		return s[:20] + "..."
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Len() > 20 {
		return rv.Slice(0, 20).Interface()
	}
	return v
}

// FuzzFastCodec checks the fast paths against the general codec on any
// bytes a peer could send: whatever a fast path reads, the codec reads the
// same; and values built from the input encode to the codec's bytes.
func FuzzFastCodec(f *testing.F) {
	for _, v := range []any{1, -300, 1.5, "héllo", []int{1, -2, 1 << 40}, []string{"a", ""}, []float64{0.5}, []int(nil)} {
		b, _ := encMode.Marshal(v)
		f.Add(b, int64(7), 2.5, "x")
	}
	f.Add([]byte{0x9a, 0xff, 0xff, 0xff, 0xff, 0x01}, int64(math.MinInt64), math.Inf(1), "\xff")
	f.Fuzz(func(t *testing.T, data []byte, i int64, x float64, s string) {
		for _, p := range []func() any{
			func() any { return new(int) }, func() any { return new(int64) }, func() any { return new(float64) },
			func() any { return new(string) }, func() any { return new([]int) }, func() any { return new([]int64) },
			func() any { return new([]float64) }, func() any { return new([]string) },
		} {
			fast, slow := p(), p()
			if !unmarshalFast(data, fast) {
				continue
			}
			if err := decMode.Unmarshal(data, slow); err != nil {
				t.Fatalf("% x into %T: the fast path read it, the codec refused it: %v", data, fast, err)
			}
			if !sameValue(reflect.ValueOf(fast).Elem().Interface(), reflect.ValueOf(slow).Elem().Interface()) {
				t.Fatalf("% x into %T: fast path %v, codec %v", data, fast, fast, slow)
			}
		}
		for _, v := range []any{int(i), i, int32(i), uint64(i), x, s, []int{int(i), -int(i)}, []float64{x, -x}, []string{s, s + s}, i%2 == 0} {
			fast, ok := marshalFast(v)
			if !ok {
				continue
			}
			want, err := encMode.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fast, want) {
				t.Fatalf("%T %v: fast path % x, codec % x", v, v, fast, want)
			}
		}
	})
}

// sameValue is reflect.DeepEqual, with floats compared bit for bit (so
// that a NaN equals the very same NaN).
func sameValue(a, b any) bool {
	bits := func(xs []float64) []uint64 {
		out := make([]uint64, len(xs))
		for i, x := range xs {
			out[i] = math.Float64bits(x)
		}
		return out
	}
	switch a := a.(type) {
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case []float64:
		b, ok := b.([]float64)
		return ok && (a == nil) == (b == nil) && reflect.DeepEqual(bits(a), bits(b))
	}
	return reflect.DeepEqual(a, b)
}
