package wire

import (
	"math/big"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// A plan is what the decoder does with a data item decoded into a value
// of one Go type, as far as the memory it allocates goes (see cost.go).
// Plans follow the codec's own rules (the fxamacker/cbor decoder, with
// decMode's options): which CBOR types a Go kind takes, how struct fields
// are named, which types decode themselves.
type plan struct {
	kind planKind
	size int64 // the type's size: what a pointer to it allocates
	elem *plan // of a pointer, slice, array or map
	key  *plan // of a map
	n    int   // an array's length
	bits int   // a number's
	// bytesElem is set for a slice or array of a kind of uint8, which takes
	// a byte string.
	bytesElem bool

	// A map's entry: the bytes of a slot of its table, and what each
	// entry allocates besides (keys and values over 128 bytes are stored
	// out of the table).
	slot, indirect int64

	// binary is set for a type that implements
	// encoding.BinaryUnmarshaler: a byte string is handed to its
	// UnmarshalBinary.
	binary bool

	fields  map[string]*fieldPlan // a struct's fields by name
	folded  map[string]*fieldPlan // by lower-case name
	byInt   map[int64]*fieldPlan  // "keyasint" fields
	toArray []*fieldPlan          // the fields of a "toarray" struct, in order
	nfields int
}

type fieldPlan struct {
	p     *plan
	extra int64 // the embedded structs the codec allocates on the way to the field
}

type planKind uint8

const (
	planOther   planKind = iota // kinds that never decode (channels, functions)
	planBool                    // bool
	planInt                     // signed integers
	planUint                    // unsigned integers
	planFloat                   // floats
	planString                  // a string: its bytes
	planSlice                   // any other slice
	planArray                   // an array
	planMap                     // a map
	planStruct                  // a struct
	planPointer                 // a pointer
	planAny                     // the empty interface: CBOR's generic types
	planIface                   // an interface with methods: never decodes
	planTime                    // time.Time
	planBigInt                  // big.Int
	planTag                     // cbor.Tag
	planSelf                    // a type that implements cbor.Unmarshaler
)

var (
	typeTime      = reflect.TypeFor[time.Time]()
	typeBigInt    = reflect.TypeFor[big.Int]()
	typeTag       = reflect.TypeFor[cbor.Tag]()
	typeAny       = reflect.TypeFor[any]()
	typeDefaultMp = reflect.TypeFor[map[string]any]() // decMode's DefaultMapType
)

// plans caches the plan of each type decoded (a *plan by reflect.Type);
// planMu serializes making them, so that a plan is stored whole.
var (
	plans  sync.Map
	planMu sync.Mutex
)

// planFor returns the plan of t.
func planFor(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	planMu.Lock()
	defer planMu.Unlock()
	made := map[reflect.Type]*plan{}
	p := makePlan(t, made)
	for t, q := range made {
		plans.LoadOrStore(t, q)
	}
	return p
}

// makePlan makes the plan of t, and of the types in it, into made (which
// also ends the recursion of a recursive type).
func makePlan(t reflect.Type, made map[reflect.Type]*plan) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	if p := made[t]; p != nil {
		return p
	}
	p := &plan{size: int64(t.Size())}
	made[t] = p
	pt := reflect.PointerTo(t)
	p.binary = pt.Implements(binaryUnmarshaler)
	switch {
	case t.Kind() == reflect.Pointer:
		p.kind, p.elem = planPointer, makePlan(t.Elem(), made)
	case t.Kind() == reflect.Interface && t.NumMethod() == 0:
		p.kind = planAny
	case t.Kind() == reflect.Interface:
		p.kind = planIface
	case t == typeTag:
		p.kind = planTag
	case t == typeTime:
		p.kind = planTime
	case pt.Implements(cborUnmarshaler):
		p.kind = planSelf
	case t == typeBigInt:
		p.kind = planBigInt
	default:
		makeKindPlan(p, t, made)
	}
	return p
}

func makeKindPlan(p *plan, t reflect.Type, made map[reflect.Type]*plan) {
	p.bits = int(t.Size()) * 8
	switch t.Kind() {
	case reflect.Bool:
		p.kind = planBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.kind = planInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		p.kind = planUint
	case reflect.Float32, reflect.Float64:
		p.kind = planFloat
	case reflect.String:
		p.kind = planString
	case reflect.Slice:
		p.kind, p.elem = planSlice, makePlan(t.Elem(), made)
		p.bytesElem = t.Elem().Kind() == reflect.Uint8
	case reflect.Array:
		p.kind, p.elem, p.n = planArray, makePlan(t.Elem(), made), t.Len()
		p.bytesElem = t.Elem().Kind() == reflect.Uint8
	case reflect.Map:
		p.kind, p.key, p.elem = planMap, makePlan(t.Key(), made), makePlan(t.Elem(), made)
		p.slot = inMap(t.Key()) + inMap(t.Elem())
		p.indirect = outOfMap(t.Key()) + outOfMap(t.Elem())
	case reflect.Struct:
		p.kind = planStruct
		makeStructPlan(p, t, made)
	default:
		p.kind = planOther // the kinds CheckType refuses
	}
}

// inMap and outOfMap are what a key or value of type t takes in a map's
// table, and out of it: Go stores one over 128 bytes by pointer.
func inMap(t reflect.Type) int64 {
	if t.Size() > 128 {
		return 8
	}
	return int64(t.Size())
}

func outOfMap(t reflect.Type) int64 {
	if t.Size() > 128 {
		return alloc(int64(t.Size()))
	}
	return 0
}

// makeStructPlan finds t's fields as the codec names them: by their cbor
// tag, or json tag, or Go name; the fields of embedded structs promoted.
// Where two fields share a name, the shallower one is kept: the codec
// drops both in some such cases, which costs less.
func makeStructPlan(p *plan, t reflect.Type, made map[reflect.Type]*plan) {
	p.fields, p.folded, p.byInt = map[string]*fieldPlan{}, map[string]*fieldPlan{}, map[int64]*fieldPlan{}
	if f, ok := t.FieldByName("_"); ok && hasOption(f.Tag.Get("cbor"), "toarray") {
		p.toArray = []*fieldPlan{}
	}
	type level struct {
		t     reflect.Type
		extra int64
	}
	seen := map[reflect.Type]bool{t: true}
	for next := []level{{t, 0}}; len(next) > 0; {
		cur := next
		next = nil
		for _, l := range cur {
			for i := range l.t.NumField() {
				f := l.t.Field(i)
				ft, extra := f.Type, l.extra
				for ft.Kind() == reflect.Pointer {
					ft, extra = ft.Elem(), extra+alloc(int64(ft.Elem().Size()))
				}
				if !f.IsExported() && !(f.Anonymous && ft.Kind() == reflect.Struct) {
					continue
				}
				tag, ok := f.Tag.Lookup("cbor")
				if !ok || tag == "" {
					tag = f.Tag.Get("json")
				}
				if tag == "-" || f.Name == "_" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if f.Anonymous && ft.Kind() == reflect.Struct && name == "" {
					if !seen[ft] {
						seen[ft] = true
						next = append(next, level{ft, extra})
					}
					continue
				}
				if name == "" {
					name = f.Name
				}
				fp := &fieldPlan{p: makePlan(f.Type, made), extra: l.extra}
				p.addField(name, hasOption(tag, "keyasint"), fp)
			}
		}
	}
}

func (p *plan) addField(name string, keyAsInt bool, fp *fieldPlan) {
	p.nfields++
	if p.toArray != nil {
		p.toArray = append(p.toArray, fp)
	}
	if keyAsInt {
		if n, ok := parseInt(name); ok {
			if _, dup := p.byInt[n]; !dup {
				p.byInt[n] = fp
			}
		}
		return
	}
	if _, dup := p.fields[name]; !dup {
		p.fields[name] = fp
	}
	if _, dup := p.folded[strings.ToLower(name)]; !dup {
		p.folded[strings.ToLower(name)] = fp
	}
}

func hasOption(tag, option string) bool {
	_, opts, _ := strings.Cut(tag, ",")
	for o := range strings.SplitSeq(opts, ",") {
		if o == option {
			return true
		}
	}
	return false
}

func parseInt(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
