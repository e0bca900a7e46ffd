package ws

import (
	"bufio"
	"bytes"
	"compress/flate"
	"net"
	"net/http"
	"sync"
)

// permessage-deflate (RFC 7692) for frames pushd writes itself. gorilla
// negotiates the extension (--ws-compression) with no context takeover in
// both directions and inflates what the client sends; pushd deflates stored
// messages once per message, like their plain frames, and every connection
// that negotiated compression shares the result. Without context takeover a
// message's compressed bytes do not depend on what the connection sent
// before, which is what makes them shareable (a sliding window per
// connection would force one compression per delivery).

// rsv1 marks a compressed message (RFC 7692 §6).
const rsv1 = 0x40

// deflateLevel trades CPU for bytes; a message is compressed once however
// many connections it reaches.
const deflateLevel = flate.BestSpeed

var flaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, deflateLevel)
	return w
}}

// deflateFrame returns the compressed text frame of payload, or the plain
// one when compression does not make it smaller.
func deflateFrame(payload []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(payload)/2 + 16)
	w := flaters.Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(payload)
	_ = w.Flush()
	flaters.Put(w)
	// A sync flush ends with an empty stored block, 00 00 ff ff, which the
	// extension leaves out (RFC 7692 §7.2.1).
	out := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	if len(out) >= len(payload) {
		return textFrame(payload)
	}
	return append(appendHeader(make([]byte, 0, len(out)+10), finText|rsv1, len(out)), out...)
}

// handshakeRecorder hands gorilla the hijacked connection through a wrapper
// that keeps the handshake response gorilla writes, so the handler knows
// whether permessage-deflate was agreed (gorilla does not say).
type handshakeRecorder struct {
	http.ResponseWriter
	conn *recordingConn
}

func (h *handshakeRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &recordingConn{Conn: c}
	return h.conn, brw, nil
}

func (h *handshakeRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// deflate reports whether the handshake response agreed on compression.
func (h *handshakeRecorder) deflate() bool {
	return h.conn != nil && bytes.Contains(h.conn.head, []byte("\r\nSec-WebSocket-Extensions: permessage-deflate"))
}

// raw is the connection under the wrapper, for pushd's own writes.
func (h *handshakeRecorder) raw() net.Conn { return h.conn.Conn }

// recordingConn keeps the first write (the handshake response).
type recordingConn struct {
	net.Conn
	head []byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.head == nil {
		c.head = append([]byte(nil), p...)
	}
	return c.Conn.Write(p)
}
