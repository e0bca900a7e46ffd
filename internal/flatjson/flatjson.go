// Package flatjson reads the one JSON shape on pushd's everyday paths by
// hand: a flat object of plain strings and integers (a push request, a
// token's claims). encoding/json's reflection cost more there than the work
// the request asks for. Callers take this path only when it accepts the
// input and otherwise hand the input to encoding/json, so what is accepted,
// and every error message, stays encoding/json's.
package flatjson

import (
	"encoding/json"
	"unicode/utf8"
)

// Object calls member for each member of data, a JSON object with nothing
// but white space around it, with the member's key (a plain string, see
// String) and its raw value. It reports false when data is not such an
// object or when member returns false. It checks the syntax of keys and of
// the object's structure; values are found by their extent and are checked
// by the caller's String, Int or Valid.
func Object(data []byte, member func(key, value []byte) bool) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return len(data) == skipSpace(data, i+1)
	}
	for {
		key, next, ok := plainString(data, i)
		if !ok {
			return false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		end, ok := valueEnd(data, i)
		if !ok || !member(key, data[i:end:end]) {
			return false
		}
		i = skipSpace(data, end)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return len(data) == skipSpace(data, i+1)
		default:
			return false
		}
	}
}

// String returns the content of value when it is a JSON string that
// encoding/json decodes to exactly its bytes: no escape, no control
// character, valid UTF-8.
func String(value []byte) (string, bool) {
	s, next, ok := plainString(value, 0)
	if !ok || next != len(value) {
		return "", false
	}
	return string(s), true
}

// Int returns value when it is a JSON integer of 1 to 15 digits without a
// sign: exactly representable as a float64, so every decoder agrees on it.
func Int(value []byte) (int64, bool) {
	if len(value) == 0 || len(value) > 15 || (value[0] == '0' && len(value) > 1) {
		return 0, false
	}
	var n int64
	for _, c := range value {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// IsObject reports whether value is a valid JSON object.
func IsObject(value []byte) bool {
	return len(value) > 0 && value[0] == '{' && json.Valid(value)
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString returns the content of the JSON string starting at data[i]
// when it holds no escape and no control character and is valid UTF-8, and
// the index after its closing quote.
func plainString(data []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s = data[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// valueEnd returns the index after the JSON value starting at data[i]: a
// string (escapes skipped), an object or array (brackets counted outside
// strings), or a scalar up to the next delimiter. It finds the extent only;
// String, Int and IsObject check the value.
func valueEnd(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		for j := i + 1; j < len(data); j++ {
			switch data[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	case '{', '[':
		depth, inString := 0, false
		for j := i; j < len(data); j++ {
			c := data[j]
			if inString {
				switch c {
				case '\\':
					j++
				case '"':
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ' ' && data[j] != '\t' && data[j] != '\n' && data[j] != '\r' {
		j++
	}
	return j, j > i
}

// AppendString appends s as a JSON string, exactly as encoding/json writes
// it: copied between quotes when it is printable ASCII other than the
// quote, the backslash and the HTML-escaped <, > and & (the everyday id or
// title), else through json.Marshal.
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
