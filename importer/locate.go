package importer

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// A place in the import file: the path of a value (customers[0].seats) and
// the byte offset where it starts.
type place struct {
	path   string
	offset int64
}

// frame is one open object or array while walking the file.
type frame struct {
	typ   reflect.Type // the Go type the object or array decodes into, nil when unknown
	array bool
	index int    // arrays: the element being read
	key   string // objects: the key being read, when hasKey
	// hasKey: the object's key is read and its value is next ("" is a key
	// like any other).
	hasKey bool
}

// walkFile reads the file's tokens, tracking the path of each value and the
// Go type it decodes into, and calls visit for every object key (with the
// key's place and whether File has such a field there) and for every scalar
// value (with its place and the offset just past it). visit returns false to
// stop. The file has already failed to decode, so a token error ends the walk.
func walkFile(data []byte, visit func(p place, end int64, unknownKey bool) bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			switch {
			case f.array:
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
			case f.hasKey:
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	// valueType is the Go type of the value about to be read.
	valueType := func() reflect.Type {
		if len(stack) == 0 {
			return reflect.TypeFor[File]()
		}
		f := stack[len(stack)-1]
		if f.typ == nil {
			return nil
		}
		if f.array {
			// An array where the format has an object or a string: the
			// file will be refused; nothing is known of its elements.
			if k := f.typ.Kind(); k == reflect.Slice || k == reflect.Array {
				return f.typ.Elem()
			}
			return nil
		}
		if sf, ok := fieldByTag(f.typ, f.key); ok {
			return sf.Type
		}
		return nil
	}
	// done finishes a value: the next token of an object is a key again.
	done := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].key, stack[n-1].hasKey = "", false
			}
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return
		}
		at := start + int64(len(data[start:])-len(bytes.TrimLeft(data[start:], " \t\r\n,:")))
		top := len(stack) - 1
		if top >= 0 && !stack[top].array && !stack[top].hasKey {
			if key, ok := tok.(string); ok {
				stack[top].key, stack[top].hasKey = key, true
				unknown := false
				if t := stack[top].typ; t != nil && t.Kind() == reflect.Struct {
					_, known := fieldByTag(t, key)
					unknown = !known
				}
				if !visit(place{path(), at}, dec.InputOffset(), unknown) {
					return
				}
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			t := valueType()
			if t != nil && t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			stack = append(stack, frame{typ: t, array: tok == json.Delim('[')})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
		default:
			if !visit(place{path(), at}, dec.InputOffset(), false) {
				return
			}
			done()
		}
	}
}

// fieldByTag finds the field a key decodes into as encoding/json does: the
// exact name first, else one that differs only in case.
func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	var folded reflect.StructField
	found := false
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == key {
			return f, true
		}
		if !found && strings.EqualFold(name, key) {
			folded, found = f, true
		}
	}
	return folded, found
}

// unknownField finds the first key the import format does not have.
func unknownField(data []byte) (p place, found bool) {
	walkFile(data, func(at place, _ int64, unknownKey bool) bool {
		if unknownKey {
			p, found = at, true
			return false
		}
		return true
	})
	return p, found
}

// valueAt finds the value that ends at or after offset: the one a type
// error (whose offset is just past the value) is about.
func valueAt(data []byte, offset int64) (p place, found bool) {
	walkFile(data, func(at place, end int64, _ bool) bool {
		if end >= offset {
			p, found = at, true
			return false
		}
		return true
	})
	return p, found
}

// nulString finds the first string (key or value) that holds a NUL.
func nulString(data []byte) (p place, found bool) {
	walkFile(data, func(at place, end int64, _ bool) bool {
		raw := bytes.TrimLeft(data[at.offset:end], " \t\r\n,:")
		var s string
		if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil && strings.ContainsRune(s, 0) {
			p, found = at, true
			return false
		}
		return true
	})
	return p, found
}
