package ws

import "encoding/binary"

// Opcodes of RFC 6455 §5.2, with FIN set.
const (
	finText  = 0x81
	finClose = 0x88
	finPing  = 0x89
	finPong  = 0x8A
)

// appendHeader appends an unmasked server frame header for n payload bytes.
func appendHeader(b []byte, op byte, n int) []byte {
	switch {
	case n < 126:
		return append(b, op, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, op, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, op, 127), uint64(n))
	}
}

// controlFrame builds a complete control frame (payload at most 125 bytes).
func controlFrame(op byte, payload []byte) []byte {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	return append(appendHeader(make([]byte, 0, 2+len(payload)), op, len(payload)), payload...)
}

// closeFrame builds a close frame with a status code and reason.
func closeFrame(code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	p = append(p, reason...)
	return controlFrame(finClose, p)
}

var pingFrame = controlFrame(finPing, nil)
