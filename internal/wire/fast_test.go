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
