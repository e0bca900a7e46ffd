package stream

// DisconnectEvent is the control event a transport sends last on a session
// ended through the API (CloseDisconnect): it tells the client why, and not
// to reconnect.
func DisconnectEvent(reason string) Control {
	return Control{Type: TypeDisconnect, Payload: map[string]string{"reason": reason}}
}
