package api

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestHEADOnGETRoutes(t *testing.T) {
	ts := startTestServer(t, nil)
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/client.js", "/"} {
		resp, err := http.Head(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Type") == "" {
			t.Errorf("HEAD %s: %d, %d body bytes, type %q", p, resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
		}
	}
	resp, err := http.Head(ts.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /sse: %d, want 405 (a stream has no HEAD)", resp.StatusCode)
	}
}

func TestBatchBodyLimits(t *testing.T) {
	ts := startTestServer(t, func(o *Options) { o.MaxMessageBytes = 200 })
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", ts.URL+"/api/ws/push/batch", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	item := `{"kind":"notification","userId":"u","title":"t","body":"b"}`
	items := make([]string, 1000)
	for i := range items {
		items[i] = item
	}
	// 1000 small messages: far over --max-message-bytes in total, accepted.
	if code, body := post(`{"messages":[` + strings.Join(items, ",") + `]}`); code != http.StatusAccepted {
		t.Fatalf("1000-message batch: %d %s", code, body)
	}
	big := `{"kind":"notification","userId":"u","title":"t","body":"` + strings.Repeat("x", 300) + `"}`
	code, body := post(`{"messages":[` + item + "," + big + `]}`)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "messages[1]") {
		t.Fatalf("oversized item: %d %s, want 413 naming messages[1]", code, body)
	}
}
