package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// badRequest is a validation failure answered with 400 and its message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// readBody reads the request body under the size limit. It reports 413 for
// an oversized body and 400 for an unreadable or non-UTF-8 one.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	return s.readBodyLimit(w, r, s.opts.MaxMessageBytes)
}

func (s *Server) readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("request body over %d bytes", limit))
		return nil, false
	}
	// A client trickling its body must not hold a handler for ever.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.opts.BodyReadTimeout))
	body, err := readAllLimit(w, r, limit)
	// Lifted once the body is in: net/http's background read (which notices
	// a client going away) would otherwise end the request at the deadline.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("request body over %d bytes", limit))
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("the request body did not arrive within %v", s.opts.BodyReadTimeout))
		} else {
			writeError(w, http.StatusBadRequest, codeBadRequest, "reading the request body failed")
		}
		return nil, false
	}
	if !utf8.Valid(body) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "request body is not valid UTF-8")
		return nil, false
	}
	return body, true
}

// readAllLimit reads the body under limit. A body of declared length (the
// caller checked it against limit, and net/http ends the body there) is
// read into one buffer of that length; io.ReadAll would grow one from 512
// bytes.
func readAllLimit(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength < 0 {
		return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// decodeStrict decodes one JSON object into v, rejecting unknown fields,
// wrong types and trailing data with a message that names the field.
func decodeStrict(data []byte, v any) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return badf("request body is empty; want a JSON object")
	}
	if trimmed[0] != '{' {
		return badf("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if rest := bytes.TrimSpace(trimmed[dec.InputOffset():]); len(rest) > 0 {
		return badf("unexpected data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return badf("field %s: want %s, got JSON %s", field, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return badf("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badf("malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return badf("malformed JSON: %v", err)
	}
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// maxIDLen bounds user, widget, table and row ids.
const maxIDLen = 256

func checkID(field, v string) error {
	if v == "" {
		return badf("%s is required and must be a non-empty string", field)
	}
	if len(v) > maxIDLen {
		return badf("%s is longer than %d bytes", field, maxIDLen)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return badf("%s contains control characters", field)
		}
	}
	return nil
}

func checkText(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return badf("%s is required and must be a non-empty string", field)
	}
	return nil
}

// present reports whether a raw JSON field was given (null counts as absent).
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

func checkObject(field string, raw json.RawMessage) error {
	if present(raw) && raw[0] != '{' {
		return badf("field %s: want an object", field)
	}
	return nil
}
