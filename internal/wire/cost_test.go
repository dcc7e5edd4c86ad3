package wire

import (
	"bytes"
	"errors"
	"math/big"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// allocated returns what f allocated on the heap.
func allocated(f func()) int64 {
	runtime.GC()
	return allocatedNoGC(f)
}

// allocatedNoGC is allocated without a collection first, for the fuzz
// targets (TotalAlloc counts what was allocated, collected or not).
func allocatedNoGC(f func()) int64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// estimate is checkCost's figure for data into a t, and whether it is
// within the limit.
func estimate(data []byte, t reflect.Type) (int64, bool) {
	w := walker{data: data, limit: 1 << 62}
	if w.item(planFor(t), 0) != nil {
		return 0, false
	}
	return w.cost, w.cost <= costLimit(len(data))
}

// repeat returns an array of n copies of item, tree in wrap.
func repeat(n int, item []byte) []byte {
	b := appendHead(nil, 4, uint64(n))
	return append(b, bytes.Repeat(item, n)...)
}

type big8 struct{ A, B, C, D, E, F, G, H int64 }

// decodeInto decodes data into a new value of the type of the pointer p.
func decodeInto(data []byte, p any) error {
	v := reflect.New(reflect.TypeOf(p).Elem())
	return UnmarshalAny(data, v.Interface())
}

// TestDecodeCostBound decodes adversarial CBOR of 1 MiB and 8 MiB, the
// shapes that made decoding cost 20 to 96 times the bytes received, and
// checks that none allocates more than CostFactor times its size (plus
// CostFloor): each is refused, with an error that matches
// ErrMessageTooLarge or ErrMalformed.
func TestDecodeCostBound(t *testing.T) {
	deep := func(n int) []byte { return append(bytes.Repeat([]byte{0x81}, n), 0xf6) }
	unknownKeys := func(n int) []byte {
		n /= 6 // a key of 4 letters and a 0
		b := appendHead(nil, 5, uint64(n))
		for i := range n {
			b = appendString(b, string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676%26))+string(rune('a'+i/17576%26)))
			b = append(b, 0)
		}
		return b
	}
	shapes := []struct {
		name string
		data func(n int) []byte // about n bytes
		into any
	}{
		{"empty maps into any", func(n int) []byte { return repeat(n, []byte{0xa0}) }, new(any)},
		{"empty arrays into any", func(n int) []byte { return repeat(n, []byte{0x80}) }, new(any)},
		{"nulls into []struct", func(n int) []byte { return repeat(n, []byte{0xf6}) }, new([]big8)},
		{"empty maps into []struct", func(n int) []byte { return repeat(n, []byte{0xa0}) }, new([]big8)},
		{"empty maps into []*struct", func(n int) []byte { return repeat(n, []byte{0xa0}) }, new([]*big8)},
		{"bignums into any", func(n int) []byte { return repeat(n/2, []byte{0xc2, 0x40}) }, new(any)},
		{"negative bignums into any", func(n int) []byte { return repeat(n/2, []byte{0xc3, 0x41, 0xff}) }, new(any)},
		{"bignums into []big.Int", func(n int) []byte { return repeat(n/2, []byte{0xc2, 0x40}) }, new([]big.Int)},
		{"bignums into []int", func(n int) []byte { return repeat(n/2, []byte{0xc3, 0x40}) }, new([]int)},
		{"epoch times into any", func(n int) []byte { return repeat(n/2, []byte{0xc1, 0x00}) }, new(any)},
		{"unknown tags into any", func(n int) []byte { return repeat(n/2, []byte{0xc6, 0x00}) }, new(any)},
		{"empty strings into []string", func(n int) []byte { return repeat(n, []byte{0x60}) }, new([]string)},
		{"empty strings into any", func(n int) []byte { return repeat(n, []byte{0x60}) }, new(any)},
		{"bools into []int", func(n int) []byte { return repeat(n, []byte{0xf5}) }, new([]int)},
		{"small maps into any", func(n int) []byte { return repeat(n/3, []byte{0xa1, 0x60, 0x00}) }, new(any)},
		{"unknown keys into a struct", unknownKeys, new(struct{ A int })},
		{"deep nesting into any", deep, new(any)},
		{"deep nesting into []any", deep, new([]any)},
	}
	for _, s := range shapes {
		for _, size := range []int{1 << 20, 8 << 20} {
			data := s.data(size)
			if len(data) < size*3/4 {
				t.Fatalf("%s: %d bytes, want about %d", s.name, len(data), size)
			}
			var err error
			got := allocated(func() { err = decodeInto(data, s.into) })
			if limit := costLimit(len(data)); got > limit {
				t.Errorf("%s, %d bytes: decoding allocated %d bytes (%.1f times), want at most %d",
					s.name, len(data), got, float64(got)/float64(len(data)), limit)
			}
			if !errors.Is(err, ErrMessageTooLarge) && !errors.Is(err, ErrMalformed) {
				t.Errorf("%s, %d bytes: got %v, want an error matching ErrMessageTooLarge or ErrMalformed", s.name, len(data), err)
			}
		}
	}
}

type tree struct {
	Name   string
	Tags   []string
	Attrs  map[string]any
	Kids   []*tree
	When   time.Time
	Big    *big.Int
	Blob   []byte
	Counts map[int]int64 `cbor:"counts"`
	Inner  struct {
		X, Y float64
		Any  any
	}
	embedded
}

type embedded struct{ Note string }

// exotic has the field kinds and tags of the codec's rarer rules.
type exotic struct {
	A     int          `cbor:"1,keyasint"`
	B     []*big8      `cbor:"-2,keyasint"`
	Times []*time.Time `json:"times"`
	Pair  pair         `cbor:"p"`
	Arr   [4]string    `cbor:"arr"`
	Raw   RawMessage   `cbor:"raw"`
	Ptrs  map[string]*tree
	Bytes [8]byte
	*Extra
}

// Extra is embedded by pointer: the decoder allocates it.
type Extra struct{ More string }

type pair struct {
	_ struct{} `cbor:",toarray"`
	X []any
	Y *big.Int
}

// costValues are ordinary values: each decodes, within the limit.
func costValues() []struct {
	name string
	v    any
} {
	ints := make([]int, 1<<20)
	for i := range ints {
		ints[i] = i * 7
	}
	small := make([]int, 1<<20)
	for i := range small {
		small[i] = i % 24
	}
	m := map[string]any{}
	for i := range 100000 {
		m["key"+string(rune('a'+i%26))+itoa(i)] = "value " + itoa(i)
	}
	var kids []*tree
	for i := range 1000 {
		kids = append(kids, &tree{Name: "kid " + itoa(i), Tags: []string{"a", "bc"},
			Attrs: map[string]any{"n": i, "s": "x", "f": 1.5, "l": []any{1, "two", 3.0}},
			When:  time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", 5*3600+1800)),
			Big:   new(big.Int).Lsh(big.NewInt(int64(i+1)), 100), Blob: []byte("blob"),
			embedded: embedded{Note: "note"}})
	}
	var strs []string
	for i := range 100000 {
		strs = append(strs, itoa(i))
	}
	var times []time.Time
	for i := range 10000 {
		times = append(times, time.Unix(int64(i)*1000, 5).UTC())
	}
	return []struct {
		name string
		v    any
	}{
		{"big []int", ints},
		{"big []int of small ints", small},
		{"map[string]any", m},
		{"tree structs", &tree{Name: "root", Kids: kids}},
		{"[]string", strs},
		{"[]time.Time", times},
		{"[]any", []any{1, "a", []any{2.5, map[string]any{"k": []byte("v")}}, nil, true}},
		{"big.Int", new(big.Int).Lsh(big.NewInt(1), 1000)},
		{"rarer rules", &exotic{A: 1, B: []*big8{{A: 1}, nil, {H: 3}}, Times: []*time.Time{&times[0], nil},
			Pair: pair{X: []any{1, "x"}, Y: big.NewInt(-2)}, Arr: [4]string{"a", "b"}, Raw: RawMessage{0x82, 0x01, 0x02},
			Ptrs: map[string]*tree{"t": {Name: "x", Tags: strs[:3]}}, Bytes: [8]byte{1}, Extra: &Extra{More: "n"}}},
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestCostModelBoundsAllocation checks the cost model against what the
// codec really allocates, for ordinary values: the estimate is at least
// what decoding takes (a few hundred bytes of the decoder's own aside),
// and within the limit, so they decode.
func TestCostModelBoundsAllocation(t *testing.T) {
	for _, c := range costValues() {
		t.Run(c.name, func(t *testing.T) {
			data, err := MarshalAny(c.v)
			if err != nil {
				t.Fatal(err)
			}
			typ := reflect.TypeOf(c.v)
			est, ok := estimate(data, typ)
			if !ok {
				t.Errorf("estimate %d bytes for %d bytes, over the limit %d", est, len(data), costLimit(len(data)))
			}
			// The first decoding of a type fills the codec's caches of it,
			// once in a process: not a cost of the message.
			_ = decMode.Unmarshal(data, reflect.New(typ).Interface())
			p := reflect.New(typ)
			got := allocated(func() { err = decMode.Unmarshal(data, p.Interface()) })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes: estimate %d (%.1f times), allocated %d (%.1f times)", len(data), est, float64(est)/float64(len(data)), got, float64(got)/float64(len(data)))
			if got > est+1024 && !raceEnabled {
				t.Errorf("decoding %d bytes allocated %d, over the estimate %d", len(data), got, est)
			}
			if err := UnmarshalAny(data, reflect.New(typ).Interface()); err != nil {
				t.Errorf("UnmarshalAny: got %v, want nil", err)
			}
		})
	}
}

// TestDecodeTags decodes tags whose number is larger than what follows
// them: a tag's number is not a count.
func TestDecodeTags(t *testing.T) {
	type handle struct {
		_    struct{} `cbor:",toarray"`
		Kind uint8
		ID   uint64
		Name string
	}
	b, err := MarshalAny(cbor.Tag{Number: 1234, Content: handle{Kind: 3, ID: 1 << 40}})
	if err != nil {
		t.Fatal(err)
	}
	var tag cbor.RawTag
	if err := UnmarshalAny(b, &tag); err != nil {
		t.Fatalf("into a cbor.RawTag: got %v, want nil", err)
	}
	var h handle
	if err := UnmarshalAny(tag.Content, &h); err != nil || h.ID != 1<<40 {
		t.Fatalf("the content: got %+v, %v; want ID %d, nil", h, err, uint64(1<<40))
	}
	type job struct {
		C *cbor.RawTag
		N int
	}
	b, _ = MarshalAny(job{C: &tag, N: 3})
	var j job
	if err := UnmarshalAny(b, &j); err != nil || j.N != 3 {
		t.Fatalf("in a struct: got %+v, %v; want N 3, nil", j, err)
	}
	var v any
	if err := UnmarshalAny(b, &v); err != nil {
		t.Fatalf("into an any: got %v, want nil", err)
	}
}

func TestSplitArray(t *testing.T) {
	data, _ := MarshalAny([]any{1, "two", []any{3, map[string]any{"k": 4}}, nil})
	got, err := SplitArray(data)
	if err != nil || len(got) != 4 {
		t.Fatalf("got %d items, %v; want 4, nil", len(got), err)
	}
	joined, _ := MarshalAny(got)
	if !bytes.Equal(joined, data) {
		t.Errorf("got %x joined again, want %x", joined, data)
	}
	for _, bad := range [][]byte{{}, {0x01}, {0x82, 0x01}, {0x81, 0x01, 0x02}, {0x9f, 0xff}} {
		if _, err := SplitArray(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("SplitArray(%x): got %v, want ErrMalformed", bad, err)
		}
	}
}

// fuzzSlack is what the codec allocates for itself, whatever the input.
const fuzzSlack = 4 << 10

// FuzzDecodeAny decodes arbitrary bytes into an any, and into a struct of
// many kinds of fields, and checks that decoding never allocates more
// than the limit: the bound the cost model promises.
func FuzzDecodeAny(f *testing.F) {
	b, _ := MarshalAny([]any{1, "a", []any{2.5, map[string]any{"k": []byte("v")}}, nil, true, new(big.Int).Lsh(big.NewInt(1), 100)})
	f.Add(b)
	b, _ = MarshalAny(&tree{Name: "n", Tags: []string{"a"}, Attrs: map[string]any{"k": []any{1.5, nil}},
		Kids: []*tree{{When: time.Unix(1, 0)}}, Big: big.NewInt(-5), Counts: map[int]int64{-1: 2}})
	f.Add(b)
	f.Add(repeat(64, []byte{0xa0}))
	f.Add(repeat(64, []byte{0xc2, 0x40}))
	f.Add(repeat(64, []byte{0xc3, 0x41, 0x01}))
	f.Add(repeat(32, []byte{0xc1, 0xfb, 0x41, 0xd0, 0, 0, 0, 0, 0, 0}))
	f.Add(append(bytes.Repeat([]byte{0x81}, 70), 0xa0))
	f.Add(append([]byte{0xd9, 0x04, 0xd2}, b...))
	b, _ = MarshalAny(&exotic{A: 1, B: []*big8{{A: 1}, nil}, Times: []*time.Time{nil}, Pair: pair{X: []any{1}, Y: big.NewInt(2)},
		Raw: RawMessage{0xa0}, Ptrs: map[string]*tree{"t": {Name: "x"}}, Extra: &Extra{More: "n"}})
	f.Add(b)
	intos := []any{new(any), new(tree), new([]big8), new(map[int]any), new(cbor.RawTag), new(exotic)}
	for _, into := range intos { // fill the codec's caches of each type first
		_ = decodeInto(b, into)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, into := range intos {
			var err error
			got := allocatedNoGC(func() { err = decodeInto(data, into) })
			if limit := costLimit(len(data)) + fuzzSlack; got > limit {
				t.Fatalf("decoding %d bytes into %T allocated %d, want at most %d (err %v)", len(data), into, got, limit, err)
			}
			// What the walk calls malformed, the codec refuses too.
			if errors.Is(err, ErrMalformed) && len(data) < 1<<10 {
				if decMode.Unmarshal(data, reflect.New(reflect.TypeOf(into).Elem()).Interface()) == nil {
					t.Fatalf("%x into %T: got %v, but the codec decodes it", data, into, err)
				}
			}
		}
	})
}
