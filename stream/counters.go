package stream

import (
	"sync/atomic"
	"time"
)

// Transports counted by the manager; other names (benchmarks) count as
// TransportOther.
const (
	TransportSSE = iota
	TransportWS
	TransportOther
	numTransports
)

// TransportNames are the label values of the per-transport counters.
var TransportNames = [numTransports]string{"sse", "ws", "other"}

func transportIndex(name string) int {
	switch name {
	case "sse":
		return TransportSSE
	case "ws":
		return TransportWS
	}
	return TransportOther
}

// Disconnect reasons of CONTRACT §9, in the order of DisconnectReasons.
const (
	ReasonClient = iota
	ReasonHeartbeatTimeout
	ReasonSlow
	ReasonKicked
	ReasonShutdown
	ReasonAuth
	numReasons
)

// DisconnectReasons are the reason label values of disconnects.
var DisconnectReasons = [numReasons]string{"client", "heartbeat_timeout", "slow", "kicked", "shutdown", "auth"}

func reasonIndex(k CloseKind) int {
	switch k {
	case CloseSlow:
		return ReasonSlow
	case CloseDisconnect:
		return ReasonKicked
	case CloseShutdown:
		return ReasonShutdown
	case CloseTimeout:
		return ReasonHeartbeatTimeout
	}
	return ReasonClient
}

// Reset reasons of CONTRACT §4.4.
var ResetReasons = [2]string{"trimmed", "unknown_id"}

// StoreOp names a store call the manager times (Observer.StoreOperation).
type StoreOp int

// Store calls made by the manager; StoreOpNames are their label values.
const (
	OpAppend StoreOp = iota
	OpReadStream
	OpDeliveredCursor
	OpHead
	OpMarkDelivered
	numStoreOps
)

// StoreOpNames are the op label values of the store timings the manager
// reports (the API adds its own: ping, queue_stats; cmd: expire).
var StoreOpNames = [numStoreOps]string{"append", "read_stream", "delivered_cursor", "head", "mark_delivered"}

// counters are the manager's cumulative figures, kept as atomics indexed by
// label so that the hot path never hashes a label.
type counters struct {
	connects    [numTransports]atomic.Uint64
	disconnects [numReasons]atomic.Uint64
	replays     atomic.Uint64
	replayed    atomic.Uint64
	resets      [len(ResetReasons)]atomic.Uint64
}

// Observer receives timings for histograms. Its methods are called on hot
// paths (PublishToWrite once per socket write of live messages) and must be
// cheap and safe for concurrent use.
type Observer struct {
	// PublishToWrite is the time from the store's acknowledgement of a
	// message (its arrival in the feed) to a socket write that carried it.
	PublishToWrite func(time.Duration)
	// StoreOperation is the duration of one store call.
	StoreOperation func(op StoreOp, d time.Duration)
}

// SetObserver installs o; call it before traffic starts (api.New does).
func (m *Manager) SetObserver(o Observer) { m.observer.Store(&o) }

// timeStore reports the duration of a store call that began at start.
func (m *Manager) timeStore(op StoreOp, start time.Time) {
	if o := m.observer.Load(); o != nil && o.StoreOperation != nil {
		o.StoreOperation(op, time.Since(start))
	}
}

// Counters are the manager's cumulative counters by label index.
type Counters struct {
	Connects    [numTransports]uint64
	Disconnects [numReasons]uint64
	Deliveries  [numTransports]uint64
	Replays     uint64
	Replayed    uint64
	Resets      [len(ResetReasons)]uint64
}

// Counters returns a snapshot of the counters.
func (m *Manager) Counters() Counters {
	c := Counters{Deliveries: m.cursors.written()}
	for i := range c.Connects {
		c.Connects[i] = m.counters.connects[i].Load()
	}
	for i := range c.Disconnects {
		c.Disconnects[i] = m.counters.disconnects[i].Load()
	}
	for i := range c.Resets {
		c.Resets[i] = m.counters.resets[i].Load()
	}
	c.Replays = m.counters.replays.Load()
	c.Replayed = m.counters.replayed.Load()
	return c
}

// AuthFailed counts and logs a subscriber connection refused for its token
// (disconnect reason auth). The error must not carry the token; jwt's errors
// do not.
func (m *Manager) AuthFailed(transport, remoteAddr string, err error) {
	m.counters.disconnects[ReasonAuth].Add(1)
	m.log.Info("disconnect", "transport", transport, "remote", remoteAddr, "reason", DisconnectReasons[ReasonAuth], "err", err)
}
