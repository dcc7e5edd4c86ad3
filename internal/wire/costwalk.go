package wire

import (
	"bytes"
	"math"
	"strings"
)

// The walk of checkCost (cost.go) over the data items, by the plan of
// the type each decodes into (plan.go): what the codec does with each,
// as far as what it allocates goes.

// item reads one data item decoded into a value of p's type (which its
// parent has allocated) and adds what decoding it allocates.
func (w *walker) item(p *plan, depth int) error {
	w.stripSelfDescribed()
	if w.isNull() && (p.kind == planPointer || p.kind == planAny || p.kind == planIface) {
		w.off++
		return nil
	}
	major, _, err := w.peek()
	if err != nil {
		return err
	}
	switch p.kind {
	case planPointer:
		for range maxNesting { // a pointer to a pointer...: each is allocated
			if err := w.add(alloc(p.elem.size)); err != nil {
				return err
			}
			if p = p.elem; p.kind != planPointer {
				return w.item(p, depth)
			}
		}
		return w.mismatch(depth)
	case planAny:
		return w.anyItem(depth)
	case planIface:
		return w.mismatch(depth)
	case planSelf, planBigInt:
		n, err := w.skipCost(depth)
		if err != nil {
			return err
		}
		if p.kind == planBigInt {
			return w.add(2*n + costBig)
		}
		return w.add(allocData(n)) // RawMessage copies
	case planTime:
		return w.timeItem(depth)
	case planTag:
		if major != 6 {
			return w.mismatch(depth)
		}
		if err := nested(depth); err != nil {
			return err
		}
		if _, _, _, err := w.head(); err != nil {
			return err
		}
		if err := w.add(costTagBox); err != nil {
			return err
		}
		return w.anyItem(depth + 1)
	}
	if major == 2 && p.binary {
		n, err := w.skipCost(depth)
		if err != nil {
			return err
		}
		return w.add(allocData(n))
	}
	if major == 6 {
		return w.typedTag(p, depth)
	}
	if major == 7 && w.isNull() {
		w.off++
		return nil // a zero value
	}
	return w.kindItem(p, major, depth)
}

// typedTag reads a tag decoded into a value of p's type.
func (w *walker) typedTag(p *plan, depth int) error {
	if err := nested(depth); err != nil {
		return err
	}
	_, _, num, err := w.head()
	if err != nil {
		return err
	}
	if num == 2 || num == 3 { // bignum: a big.Int, then its bytes or its value
		n, err := w.skipCost(depth + 1)
		if err != nil {
			return err
		}
		return w.add(3*n + costBig + costError)
	}
	if num == 0 || num == 1 { // a time's content is checked first
		if err := w.add(costError); err != nil {
			return err
		}
	}
	return w.item(p, depth+1)
}

// kindItem reads an item decoded into a value of p's kind.
func (w *walker) kindItem(p *plan, major byte, depth int) error {
	switch {
	case p.kind <= planFloat && (major <= 1 || major == 7):
		return w.number(p)
	case p.kind == planString && major == 3:
		s, err := w.str()
		if err != nil {
			return err
		}
		return w.add(allocData(int64(len(s))))
	case p.kind == planSlice && major == 2 && p.bytesElem:
		s, err := w.str()
		if err != nil {
			return err
		}
		return w.add(allocData(int64(len(s))))
	case p.kind == planSlice && major == 4:
		return w.array(p, true, depth)
	case p.kind == planArray && major == 4:
		return w.array(p, false, depth)
	case p.kind == planArray && major == 2 && p.bytesElem:
		_, err := w.str()
		return err
	case p.kind == planMap && major == 5:
		return w.mapItem(p, depth)
	case p.kind == planStruct && major == 5 && p.toArray == nil:
		return w.structItem(p, depth)
	case p.kind == planStruct && major == 4 && p.toArray != nil:
		return w.toArrayItem(p, depth)
	}
	return w.mismatch(depth)
}

// number reads a number, a bool or a simple value decoded into a number
// or a bool: one the decoder does not take (a float into an int, a value
// that overflows) makes an error.
func (w *walker) number(p *plan) error {
	major, info, arg, err := w.head()
	if err != nil {
		return err
	}
	maxInt := uint64(1)<<(p.bits-1) - 1
	var ok bool
	switch {
	case major == 0:
		ok = p.kind == planInt && arg <= maxInt || p.kind == planUint && arg <= maxInt<<1|1 || p.kind == planFloat
	case major == 1:
		ok = p.kind == planInt && arg <= maxInt || p.kind == planFloat
	case info == 20 || info == 21: // false, true
		ok = p.kind == planBool
	case info == 22 || info == 23: // null, undefined: the zero value
		ok = true
	case info == 25 || info == 26:
		ok = p.kind == planFloat
	case info == 27:
		f := math.Abs(math.Float64frombits(arg))
		ok = p.kind == planFloat && (p.bits == 64 || f <= math.MaxFloat32 || math.IsInf(f, 0) || math.IsNaN(f))
	default: // a simple value: as a positive integer
		ok = p.kind == planInt && arg <= maxInt || p.kind == planUint && arg <= maxInt<<1|1 || p.kind == planFloat
	}
	if ok {
		return nil
	}
	return w.add(costError)
}

// mismatch reads an item the decoder skips, with an error.
func (w *walker) mismatch(depth int) error {
	if err := w.add(costError); err != nil {
		return err
	}
	return w.skip(depth)
}

func (w *walker) array(p *plan, slice bool, depth int) error {
	if err := nested(depth); err != nil {
		return err
	}
	n, err := w.count(false)
	if err != nil {
		return err
	}
	if slice {
		if err := w.addN(n, p.elem.size); err != nil {
			return err
		}
	}
	for i := range n {
		if !slice && i >= uint64(p.n) {
			if err := w.skip(depth + 1); err != nil {
				return err
			}
			continue
		}
		if err := w.item(p.elem, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// mapCost is what a map of n entries of slot bytes takes: tables of
// groups of 8 slots and 8 control bytes, held at most 7/8 full, in
// powers of two, and half as much again for the tables that split as
// entries are added and for their rounding to pages (measured: 100,000
// entries of map[string]any take 1.25 times the groups' bytes).
func mapCost(n uint64, slot int64) (int64, bool) {
	if n == 0 {
		return costMapBase, true // the table comes with the first entry
	}
	slots := uint64(8)
	for slots*7/8 < n {
		slots *= 2
		if slots > 1<<40 {
			return 0, false
		}
	}
	groups := alloc(int64(slots/8) * (8 + 8*slot))
	if slots > 8 {
		groups += groups / 2
	}
	return groups + costMapBase, true
}

func (w *walker) mapItem(p *plan, depth int) error {
	if err := nested(depth); err != nil {
		return err
	}
	n, err := w.count(true)
	if err != nil {
		return err
	}
	c, ok := mapCost(n, p.slot)
	if !ok {
		return errOverBudget
	}
	if err := w.add(c + alloc(p.key.size) + alloc(p.elem.size)); err != nil {
		return err
	}
	if err := w.addN(n, p.indirect); err != nil {
		return err
	}
	for range n {
		if err := w.item(p.key, depth+1); err != nil {
			return err
		}
		if err := w.item(p.elem, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) structItem(p *plan, depth int) error {
	if err := nested(depth); err != nil {
		return err
	}
	n, err := w.count(true)
	if err != nil {
		return err
	}
	if p.nfields > 128 {
		if err := w.add(alloc(int64(p.nfields))); err != nil {
			return err
		}
	}
	for range n {
		f, err := w.field(p, depth+1)
		if err != nil {
			return err
		}
		if f == nil { // unknown: the value is skipped
			if err := w.skip(depth + 1); err != nil {
				return err
			}
			continue
		}
		if err := w.add(f.extra); err != nil {
			return err
		}
		if err := w.item(f.p, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// field reads a struct's key, and returns its field, or nil for a key
// the decoder records as unknown.
func (w *walker) field(p *plan, depth int) (*fieldPlan, error) {
	major, _, err := w.peek()
	if err != nil {
		return nil, err
	}
	switch major {
	case 3:
		s, err := w.str()
		if err != nil {
			return nil, err
		}
		if f := p.fields[string(s)]; f != nil {
			return f, nil
		}
		if f := p.folded[strings.ToLower(string(s))]; f != nil {
			return f, nil
		}
		return nil, w.add(costUnknown + allocData(int64(len(s))))
	case 0, 1:
		_, _, arg, err := w.head()
		if err != nil {
			return nil, err
		}
		if arg <= math.MaxInt64 {
			n := int64(arg)
			if major == 1 {
				n = -1 - n
			}
			if f := p.byInt[n]; f != nil {
				return f, nil
			}
		}
		return nil, w.add(costUnknown)
	}
	// Any other key is decoded as an any, recorded, and an error.
	if err := w.add(costUnknown + costError); err != nil {
		return nil, err
	}
	return nil, w.anyItem(depth)
}

func (w *walker) toArrayItem(p *plan, depth int) error {
	if err := nested(depth); err != nil {
		return err
	}
	start := w.off
	n, err := w.count(false)
	if err != nil {
		return err
	}
	if n != uint64(len(p.toArray)) {
		w.off = start
		return w.mismatch(depth)
	}
	for _, f := range p.toArray {
		if err := w.add(f.extra); err != nil {
			return err
		}
		if err := w.item(f.p, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// timeItem reads an item decoded into a time.Time: parsing a time with
// an offset makes a zone.
func (w *walker) timeItem(depth int) error {
	major, _, err := w.peek()
	if err != nil {
		return err
	}
	for major == 6 {
		if err := nested(depth); err != nil {
			return err
		}
		depth++
		if _, _, _, err := w.head(); err != nil {
			return err
		}
		if major, _, err = w.peek(); err != nil {
			return err
		}
	}
	switch major {
	case 0, 1, 7:
		_, _, _, err := w.head()
		return err
	case 3:
		s, err := w.str()
		if err != nil {
			return err
		}
		c := allocData(int64(len(s))) // the text, as a string to parse
		if !bytes.HasSuffix(s, []byte("Z")) {
			c += costTimeLoc
		}
		return w.add(c)
	}
	return w.mismatch(depth)
}

// anyItem reads an item decoded into an any: CBOR's generic types, maps
// as map[string]any (decMode's DefaultMapType).
func (w *walker) anyItem(depth int) error {
	major, first, err := w.peek()
	if err != nil {
		return err
	}
	switch major {
	case 0, 1:
		if _, _, _, err := w.head(); err != nil {
			return err
		}
		return w.add(costBox)
	case 2, 3:
		s, err := w.str()
		if err != nil {
			return err
		}
		return w.add(allocData(int64(len(s))) + 24)
	case 4:
		if err := nested(depth); err != nil {
			return err
		}
		n, err := w.count(false)
		if err != nil {
			return err
		}
		if err := w.add(24); err != nil {
			return err
		}
		if err := w.addN(n, 16); err != nil {
			return err
		}
		for range n {
			w.stripSelfDescribed()
			if err := w.anyItem(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 5:
		if err := w.add(costBox); err != nil {
			return err
		}
		return w.item(planFor(typeDefaultMp), depth)
	case 6:
		return w.anyTag(depth)
	}
	if first == 0xf6 || first == 0xf7 || first == 0xf4 || first == 0xf5 {
		w.off++
		return nil
	}
	if _, _, _, err := w.head(); err != nil {
		return err
	}
	return w.add(costBox)
}

// anyTag reads a tag decoded into an any: a time, a big.Int, or a
// cbor.Tag around its content.
func (w *walker) anyTag(depth int) error {
	if err := nested(depth); err != nil {
		return err
	}
	_, _, num, err := w.head()
	if err != nil {
		return err
	}
	switch num {
	case 0, 1:
		if err := w.add(costTime + costTimeLoc + costError); err != nil {
			return err
		}
		return w.skip(depth + 1)
	case 2, 3:
		n, err := w.skipCost(depth + 1)
		if err != nil {
			return err
		}
		return w.add(3*n + costBig + costError)
	}
	if err := w.add(costTagBox); err != nil {
		return err
	}
	return w.anyItem(depth + 1)
}
