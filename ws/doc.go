// Package ws is the WebSocket transport (GET /ws).
//
// gorilla/websocket does the handshake, the Origin check and all reading
// (frame parsing, masking, control frames). Writing does not go through it:
// server frames are unmasked and trivial to frame, and writing them
// ourselves lets one writev carry every queued message with each message's
// JSON shared by all connections (gorilla writes one frame per syscall and
// copies each payload into a per-connection buffer; PreparedMessage helps
// only with compression, which we do not use). The session's on-demand pump
// is the connection's only writer, so gorilla's one-writer rule holds: after
// the session starts, pongs and close frames are queued to the pump too.
package ws
