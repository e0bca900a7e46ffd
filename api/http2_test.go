package api

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSSEOverHTTP2: with TLS the stream is an HTTP/2 stream, which cannot be
// taken over; the handler keeps it and the same frames arrive.
func TestSSEOverHTTP2(t *testing.T) {
	s := newTestServer(t, nil)
	ts := httptest.NewUnstartedServer(s)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	client := ts.Client()
	tok, _, _ := s.opts.Tokens.Mint("h2user")
	resp, err := client.Get(ts.URL + "/sse?access_token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %s %d %q, want HTTP/2 200 text/event-stream", resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	req, _ := http.NewRequest("POST", ts.URL+"/api/ws/push/notification", strings.NewReader(`{"userId":"h2user","title":"t","body":"over h2"}`))
	req.Header.Set("Authorization", "Bearer k")
	pr, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, pr.Body)
	pr.Body.Close()
	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			select {
			case lines <- l:
			case <-done: // the test has what it wanted
				return
			}
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended")
			}
			if strings.Contains(l, "over h2") {
				// Disconnect ends the HTTP/2 stream with a disconnect event.
				if n := s.manager.DisconnectUser("h2user", "bye"); n != 1 {
					t.Fatalf("disconnected %d", n)
				}
				for l := range lines {
					if strings.Contains(l, `"reason":"bye"`) {
						return
					}
				}
				t.Fatal("no disconnect event before the stream ended")
			}
		case <-deadline:
			t.Fatal("no message over HTTP/2 within 10s")
		}
	}
}
