package sse

import (
	"net"
	"strconv"
	"time"

	"github.com/pushd/pushd/stream"
)

// messageFrame returns the SSE frame of a stored message: rendered once, in
// the message's SSE encoding slot, and shared by every stream that delivers
// it.
func messageFrame(m *stream.Message) []byte {
	return m.Encoding(stream.SlotSSE, func(envelope []byte) []byte {
		return appendFrame(make([]byte, 0, len(envelope)+2*len(m.ID)+len(m.Type)+32), m.ID, m.Type, envelope)
	})
}

// controlFrame renders a control event as an SSE frame. It has no id: line,
// so it never moves the browser's Last-Event-ID.
func controlFrame(c stream.Control) []byte { return appendFrame(nil, "", c.Type, c.JSON()) }

// appendFrame appends the event of envelope (one line: stream compacts
// payload newlines) with its id (when not empty) and type.
func appendFrame(b []byte, id, typ string, envelope []byte) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	b = append(b, envelope...)
	return append(b, '\n', '\n')
}

// frames lists the frames of items: a stored message's frame is rendered
// once and shared by every connection that delivers it.
func frames(bufs net.Buffers, items []stream.Item) net.Buffers {
	for _, it := range items {
		switch {
		case it.Msg != nil:
			bufs = append(bufs, messageFrame(it.Msg))
		case it.Control != nil:
			bufs = append(bufs, controlFrame(*it.Control))
		}
	}
	return bufs
}

// retryFrame is an event of only a retry: field: EventSource takes the new
// delay and dispatches nothing.
func retryFrame(d time.Duration) []byte {
	return []byte("retry: " + strconv.FormatInt(d.Milliseconds(), 10) + "\n\n")
}

// disconnectFrame is the disconnect event that ends a stream closed through
// the API: the client must not reconnect.
func disconnectFrame(reason string) []byte {
	return controlFrame(stream.DisconnectEvent(reason))
}
