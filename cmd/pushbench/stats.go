package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a lock-free log-linear latency histogram: 64 sub-buckets per
// power of two of microseconds (under 1.6% error), enough for millions of
// samples from thousands of goroutines without a lock or a slice per sample.
type histogram struct {
	counts [64 * 40]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const histSub = 64

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 7 // us >> e is in [64,128)
	return (e+1)*histSub + int(us>>uint(e)) - histSub
}

func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	m := uint64(i%histSub + histSub)
	// middle of the bucket
	return m<<uint(e) + (uint64(1)<<uint(e))/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	us := uint64(d / time.Microsecond)
	i := histIndex(us)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// shardedHist spreads recording over several histograms by subscriber, so
// thousands of readers on two cores do not contend on the same counters;
// merged sums them.
type shardedHist [16]histogram

func (s *shardedHist) record(shard int, d time.Duration) { s[shard%len(s)].record(d) }

func (s *shardedHist) merged() *histogram {
	h := new(histogram)
	for i := range s {
		for j := range s[i].counts {
			if c := s[i].counts[j].Load(); c > 0 {
				h.counts[j].Add(c)
			}
		}
		h.n.Add(s[i].n.Load())
		h.max.Store(max(h.max.Load(), s[i].max.Load()))
	}
	return h
}

// quantile returns the q-quantile in milliseconds.
func (h *histogram) quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := float64(histValue(i)) / 1000
			if mx := float64(h.max.Load()) / 1e6; v > mx {
				v = mx
			}
			return v
		}
	}
	return float64(h.max.Load()) / 1e6
}

// bitset is a growable set of small non-negative integers (message
// sequence numbers). expected sets are written concurrently by publishers,
// so words are updated atomically; a fixed capacity is chosen up front.
type bitset struct {
	w []atomic.Uint64
}

func newBitset(n int) *bitset { return &bitset{w: make([]atomic.Uint64, (n+63)/64)} }

func (b *bitset) set(i int) (already bool) {
	if i < 0 || i/64 >= len(b.w) {
		return false
	}
	m := uint64(1) << uint(i%64)
	return b.w[i/64].Or(m)&m != 0
}

// andNotCount counts the bits set in b and not in o.
func (b *bitset) andNotCount(o *bitset) int {
	n := 0
	for i := range b.w {
		x := b.w[i].Load()
		if i < len(o.w) {
			x &^= o.w[i].Load()
		}
		n += bits.OnesCount64(x)
	}
	return n
}

func (b *bitset) count() int {
	n := 0
	for i := range b.w {
		n += bits.OnesCount64(b.w[i].Load())
	}
	return n
}
