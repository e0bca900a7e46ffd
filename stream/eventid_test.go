package stream

import "testing"

func TestEventIDRoundTrip(t *testing.T) {
	for _, seq := range []uint64{1, 9, 10, 1 << 40, 9999999999999999} {
		id := FormatID("abcd1234", seq)
		got, ok := ParseID("abcd1234", id)
		if !ok || got != seq {
			t.Fatalf("%q parsed to %d %v, want %d", id, got, ok, seq)
		}
	}
	if FormatID("e", 9) >= FormatID("e", 10) {
		t.Fatal("ids must sort as strings in position order")
	}
	for _, bad := range []string{"", "abcd1234", "abcd1234-", "other-0000000000000001", "abcd1234-0000000000000000", "abcd1234-00000000000000x1", "abcd1234-1", "abcd1234-00000000000000001"} {
		if _, ok := ParseID("abcd1234", bad); ok {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func FuzzParseID(f *testing.F) {
	f.Add("abcd1234-0000000000000042")
	f.Add("garbage")
	f.Add("abcd1234--000000000000001")
	f.Fuzz(func(t *testing.T, id string) {
		seq, ok := ParseID("abcd1234", id)
		if ok && FormatID("abcd1234", seq) != id {
			t.Fatalf("%q accepted but formats back to %q", id, FormatID("abcd1234", seq))
		}
	})
}

func TestEnvelopeCompactsPayloadNewlines(t *testing.T) {
	m := NewMessage("e", 1, Draft{Type: TypeNotification, Payload: []byte("{\n \"a\": 1\r\n}"), Timestamp: 5})
	want := `{"id":"e-0000000000000001","type":"notification","payload":{"a":1},"timestamp":5}`
	if string(m.JSON()) != want {
		t.Fatalf("got %s", m.JSON())
	}
}
