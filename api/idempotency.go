package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
)

// Idempotent publishing (CONTRACT §5): a publish may carry an
// Idempotency-Key header, a batch item an idempotencyKey field. The store
// keeps each key with a fingerprint of its request, atomically with the
// message; a repeat is answered with the first answer, a different request
// under the same key with 409.
//
// The fingerprint hashes the request as JSON in a canonical form (object
// keys sorted, the literal text of numbers kept), without "kind" and
// "idempotencyKey" and prefixed with the kind of push: a retry that encodes
// the same request differently is still a repeat, and a batch item is the
// same request as the single push it mirrors.
//
// On a batch the header covers the whole batch: every item is kept with
// the fingerprint of the whole body, item 0 under the header's key and item
// i under the key and i (joined by a byte no valid key holds, so it cannot
// collide with a key a client sends). A repeat answers every id again, any
// change to the batch is a conflict, and the key stays one namespace with
// single pushes and item keys. The header and item keys are not combined in
// one batch.

const (
	idempotencyHeader = "Idempotency-Key"
	// replayedHeader marks an answer that repeats an earlier one: nothing
	// of the request was stored by it.
	replayedHeader = "Idempotent-Replayed"
	maxKeyLen      = 200
	// batchKeySep joins a batch's header key and an item's index.
	batchKeySep = "\x1f"
)

// checkKey validates an idempotency key: 1-200 printable ASCII characters.
func checkKey(field, v string) error {
	if v == "" || len(v) > maxKeyLen {
		return badf("%s must be 1 to %d characters long, got %d", field, maxKeyLen, len(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return badf("%s must be printable ASCII; byte %d is 0x%02x", field, i, v[i])
		}
	}
	return nil
}

// idempotencyKeyOf returns the request's Idempotency-Key ("" when absent).
func idempotencyKeyOf(r *http.Request) (string, error) {
	vals := r.Header.Values(idempotencyHeader)
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
		return vals[0], checkKey(idempotencyHeader+" header", vals[0])
	default:
		return "", badf("%s header given %d times; send it once", idempotencyHeader, len(vals))
	}
}

// batchItemKey is the key item i of a batch sent with header key key is
// kept under.
func batchItemKey(key string, i int) string {
	if i == 0 {
		return key
	}
	return key + batchKeySep + strconv.Itoa(i)
}

// mayHoldKeyField reports whether a JSON object may have an idempotencyKey
// field, so that objects without one are not decoded twice: the name
// written out, or any escape (a name may be written with them).
func mayHoldKeyField(raw []byte) bool {
	return bytes.Contains(raw, []byte("idempotencyKey")) || bytes.Contains(raw, []byte(`\u`))
}

// fingerprint identifies a request of kind (a push kind, or "batch") with
// JSON body raw, already validated.
func fingerprint(kind string, raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil {
		if obj, ok := v.(map[string]any); ok {
			delete(obj, "kind")
			delete(obj, "idempotencyKey")
		}
		if canon, err := json.Marshal(v); err == nil {
			raw = canon
		}
	}
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil))
}
