// Package ws is the WebSocket transport (GET /ws) on gorilla/websocket.
//
// gorilla allows one reader and one writer at a time: the handler goroutine
// owns every data write (queued messages, heartbeats, error frames, close),
// a reader goroutine parses client frames and hands replies to the session
// queue. Only WriteControl (pings) is used concurrently, as gorilla permits.
package ws
