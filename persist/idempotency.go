package persist

import (
	"slices"

	"github.com/pushd/pushd/stream"
)

// Idempotent appends (CONTRACT §5 "Idempotent publishing"), the part both
// stores share: deciding, draft by draft, whether a keyed draft is new, a
// repeat of a key kept from before, a repeat of a draft earlier in the same
// append, or a conflict. The stores differ only in where kept keys come
// from and how the new ones are written: the memory store under its mutex,
// PostgreSQL in the transaction that stores the messages
// (postgres_idempotency.go).

// keptKey is what a store keeps for an idempotency key: the request's
// fingerprint and the answer it got (the message's position and timestamp).
type keptKey struct {
	fingerprint string
	seq         uint64
	ts          int64
}

// keyedAppend plans one append (a memory append, a PostgreSQL group of
// calls): which drafts are stored, and where every call's messages come
// from.
type keyedAppend struct {
	// kept looks a key up among those stored before (and not expired).
	kept func(key string) (keptKey, bool)
	// fresh are the drafts to store, in order.
	fresh []stream.Draft
	// added are the keys of fresh drafts: key -> index into fresh.
	added map[string]int
}

// source says where one draft's message comes from: fresh[fresh] once
// stored (repeat: by another call), or (fresh < 0) the answer first given
// under its key.
type source struct {
	fresh  int
	repeat bool
	first  keptKey
}

// callPlan says where one call's messages come from: per draft (srcs), or,
// when srcs is nil (no draft of the call has a key), fresh[first:] in
// order.
type callPlan struct {
	first int
	srcs  []source
}

func newKeyedAppend(kept func(string) (keptKey, bool)) *keyedAppend {
	return &keyedAppend{kept: kept}
}

// plan adds the drafts of one call. On a conflict it returns a
// *stream.KeyConflictError and adds nothing of the call.
func (k *keyedAppend) plan(drafts []stream.Draft) (callPlan, error) {
	if !slices.ContainsFunc(drafts, func(d stream.Draft) bool { return d.IdempotencyKey != "" }) {
		cp := callPlan{first: len(k.fresh)}
		if len(k.fresh) == 0 {
			k.fresh = drafts[:len(drafts):len(drafts)] // no copy on the common path
		} else {
			k.fresh = append(k.fresh, drafts...)
		}
		return cp, nil
	}
	srcs := make([]source, len(drafts))
	var mine map[string]int // keys of this call's new drafts -> draft index
	n := len(k.fresh)
	for i, d := range drafts {
		if d.IdempotencyKey != "" {
			fp, src, ok := k.find(d.IdempotencyKey, drafts, srcs, mine)
			if ok && fp != d.Fingerprint {
				return callPlan{}, &stream.KeyConflictError{Index: i, Key: d.IdempotencyKey}
			}
			if ok {
				srcs[i] = src
				continue
			}
			if mine == nil {
				mine = map[string]int{}
			}
			mine[d.IdempotencyKey] = i
		}
		srcs[i] = source{fresh: n}
		n++
	}
	// The call is good: commit its new drafts and keys.
	for i, d := range drafts {
		if srcs[i].fresh != len(k.fresh) {
			continue // a repeat
		}
		if d.IdempotencyKey != "" {
			if k.added == nil {
				k.added = map[string]int{}
			}
			k.added[d.IdempotencyKey] = len(k.fresh)
		}
		k.fresh = append(k.fresh, d)
	}
	return callPlan{srcs: srcs}, nil
}

// find looks key up: among the call's own new drafts so far, then this
// append's, then the store's.
func (k *keyedAppend) find(key string, drafts []stream.Draft, srcs []source, mine map[string]int) (fp string, src source, ok bool) {
	if i, ok := mine[key]; ok {
		return drafts[i].Fingerprint, srcs[i], true
	}
	if i, ok := k.added[key]; ok {
		return k.fresh[i].Fingerprint, source{fresh: i, repeat: true}, true
	}
	if kk, ok := k.kept(key); ok {
		return kk.fingerprint, source{fresh: -1, first: kk}, true
	}
	return "", source{}, false
}

// messages builds one call's result from its sources and the stored fresh
// messages.
func (k *keyedAppend) messages(epoch string, drafts []stream.Draft, cp callPlan, fresh []*stream.Message) []*stream.Message {
	if cp.srcs == nil {
		return fresh[cp.first : cp.first+len(drafts) : cp.first+len(drafts)]
	}
	out := make([]*stream.Message, len(drafts))
	for i, src := range cp.srcs {
		if src.fresh >= 0 && !src.repeat {
			out[i] = fresh[src.fresh]
			continue
		}
		first := src.first
		if src.fresh >= 0 {
			first = keptKey{seq: fresh[src.fresh].Seq, ts: fresh[src.fresh].Timestamp}
		}
		d := drafts[i]
		d.Timestamp = first.ts
		out[i] = stream.NewMessage(epoch, first.seq, d)
		out[i].Repeat = true
	}
	return out
}
