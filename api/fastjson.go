package api

import (
	"encoding/json"

	"github.com/pushd/pushd/internal/flatjson"
)

// The everyday push is a small flat object of strings: decoding it through
// encoding/json's reflection (a Decoder, its buffer, field lookup) cost more
// than storing it. decodeFlat reads that shape by hand and reports false
// for anything else, which the caller then hands to decodeStrict: so every
// answer, and every error message, stays the strict decoder's.
// FuzzDecodeFlat holds the two to the same result.

// flatField is one member decodeFlat may fill: a string (str) or a JSON
// object kept raw (raw).
type flatField struct {
	name string
	str  *string
	raw  *json.RawMessage
}

// decodeFlat fills fields from data when data is one JSON object whose
// members all name a field exactly (encoding/json would also match other
// letter cases: those take the strict path) and whose values are plain
// strings for str fields or objects for raw fields. It reports false,
// leaving the fields in an unspecified state, for anything else.
func decodeFlat(data []byte, fields []flatField) bool {
	return flatjson.Object(data, func(key, value []byte) bool {
		for k := range fields {
			f := &fields[k]
			if f.name != string(key) {
				continue
			}
			if f.str != nil {
				s, ok := flatjson.String(value)
				*f.str = s
				return ok
			}
			*f.raw = value
			return flatjson.IsObject(value)
		}
		return false
	})
}
