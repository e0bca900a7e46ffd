package api

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"testing"
)

// TestClientServedFromItsPackage: /client.js and friends are the bytes of
// the npm package directory client/.
func TestClientServedFromItsPackage(t *testing.T) {
	ts := startTestServer(t, nil)
	for _, name := range []string{"client.js", "client.d.ts", "react.js", "react.d.ts"} {
		file, err := os.ReadFile("../client/" + name)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(ts.URL + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, file) {
			t.Errorf("GET /%s: %s, %d bytes; the package file has %d", name, resp.Status, len(body), len(file))
		}
	}
}
