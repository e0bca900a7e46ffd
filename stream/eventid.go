package stream

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event ids are "<epoch>-<seq>", seq zero-padded to 16 decimal digits so ids
// also sort as strings. The epoch names one store's lifetime: an id minted by
// a wiped or different store carries another epoch and is recognised as
// unknown instead of being misplaced in the new log.
const seqDigits = 16

// FormatID returns the event id of position seq in the store epoch.
func FormatID(epoch string, seq uint64) string {
	s := strconv.FormatUint(seq, 10)
	if len(s) < seqDigits {
		s = strings.Repeat("0", seqDigits-len(s)) + s
	}
	return epoch + "-" + s
}

// ParseID returns the position encoded in id if id was minted by the store
// whose epoch is epoch.
func ParseID(epoch, id string) (uint64, bool) {
	e, s, ok := strings.Cut(id, "-")
	if !ok || e != epoch || len(s) != seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

// NewEpoch returns a fresh random epoch (8 hex digits).
func NewEpoch() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("stream: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// NowMillis is the current time in milliseconds since the epoch.
func NowMillis() int64 { return time.Now().UnixMilli() }
