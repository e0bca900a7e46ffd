package ws

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/pushd/pushd/stream"
)

// realisticPayload is a dashboard update of 20 order rows (about 1.5 KB).
var realisticPayload = func() []byte {
	var rows []map[string]any
	for i := range 20 {
		rows = append(rows, map[string]any{"id": i, "status": "shipped", "customer": "ACME Corporation", "total": 129.5})
	}
	p, _ := json.Marshal(map[string]any{"widgetId": "orders", "data": rows, "timestamp": 1732600000000})
	return p
}()

func realisticMessage(seq uint64) *stream.Message {
	return stream.NewMessage("e", seq, stream.Draft{Type: stream.TypeDashboardUpdate, UserID: "u", Payload: realisticPayload, Timestamp: 1})
}

// TestDeflateFrameOncePerMessage: a compressed frame is a valid RFC 7692
// message (RSV1, no trailing 00 00 ff ff) that inflates to the envelope,
// and every connection that agreed on compression writes the same bytes.
func TestDeflateFrameOncePerMessage(t *testing.T) {
	m := realisticMessage(1)
	items := []stream.Item{{Msg: m}}
	a := appendFrames(nil, items, true)
	b := appendFrames(nil, items, true)
	if &a[0][0] != &b[0][0] {
		t.Fatal("the compressed frame was built twice for one message")
	}
	f := a[0]
	if f[0] != finText|rsv1 {
		t.Fatalf("first byte %#x, want FIN|RSV1|text", f[0])
	}
	n, off := int(f[1]), 2
	if n == 126 {
		n, off = int(f[2])<<8|int(f[3]), 4
	}
	body := f[off:]
	if len(body) != n {
		t.Fatalf("header says %d bytes, frame carries %d", n, len(body))
	}
	// The receiver appends the tail the sender left out (RFC 7692 §7.2.2).
	got, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(body), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff"))))
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, m.JSON()) {
		t.Fatalf("inflated %q, want the envelope", got)
	}
	if plain := appendFrames(nil, items, false); len(plain[0]) <= len(f) {
		t.Fatalf("compressed frame %d bytes, plain %d", len(f), len(plain[0]))
	}
	// What deflate cannot shrink goes out plain.
	if f := deflateFrame([]byte(`{"k":"Zq8"}`)); f[0] != finText || string(f[2:]) != `{"k":"Zq8"}` {
		t.Fatalf("an incompressible payload: frame %q, want it plain", f)
	}
}

// BenchmarkFrameDelivery: CPU and bytes per delivery of a realistic
// dashboard update (20 rows, about 1.5 KB of JSON), plain or deflated, for
// one message reaching fanout connections: the frame is built once per
// message, so its cost is divided among the deliveries.
func BenchmarkFrameDelivery(b *testing.B) {
	for _, compress := range []bool{false, true} {
		for _, fanout := range []int{1, 100} {
			name := "plain"
			if compress {
				name = "deflate"
			}
			b.Run(name+"/fanout="+strconv.Itoa(fanout), func(b *testing.B) {
				var bytesOut int
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					items := []stream.Item{{Msg: realisticMessage(uint64(i + 1))}}
					for range fanout {
						bytesOut += len(appendFrames(nil, items, compress)[0])
					}
				}
				deliveries := float64(b.N) * float64(fanout)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
				b.ReportMetric(float64(bytesOut)/deliveries, "bytes/delivery")
			})
		}
	}
}
