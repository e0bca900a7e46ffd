package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func benchServer(b *testing.B) (*httptest.Server, *http.Client) {
	ts := startTestServer(b, nil)
	return ts, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

func benchPost(b *testing.B, c *http.Client, url string, body []byte) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkPublishSingle: one notification per REST call, 8 concurrent
// publishers, in-memory store. Reports messages/s.
func BenchmarkPublishSingle(b *testing.B) {
	ts, c := benchServer(b)
	body := []byte(`{"userId":"u1","title":"t","body":"b"}`)
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, c, ts.URL+"/api/ws/push/notification", body)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPublishBatch: 1000 notifications per POST /api/ws/push/batch.
func BenchmarkPublishBatch(b *testing.B) {
	ts, c := benchServer(b)
	items := make([]string, 1000)
	for i := range items {
		items[i] = fmt.Sprintf(`{"kind":"notification","userId":"u%d","title":"t","body":"b"}`, i%100)
	}
	body := []byte(`{"messages":[` + strings.Join(items, ",") + `]}`)
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, c, ts.URL+"/api/ws/push/batch", body)
		}
	})
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "msgs/s")
}
