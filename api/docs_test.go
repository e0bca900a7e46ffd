package api

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pushd/pushd"
)

func TestServedSpecIsTheFile(t *testing.T) {
	ts := startTestServer(t, nil)
	file, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ts.URL + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, file) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/yaml") {
		t.Fatalf("GET /openapi.yaml: %s %q, %d bytes (file: %d)", resp.Status, resp.Header.Get("Content-Type"), len(body), len(file))
	}
}

// TestDocsPageCoversEveryRoute: /docs shows every operation of the spec
// with its answers and a curl example, and loads nothing from elsewhere.
func TestDocsPageCoversEveryRoute(t *testing.T) {
	ts := startTestServer(t, nil)
	resp, err := http.Get(ts.URL + "/docs")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	html := string(page)
	for route := range openapiRoutes(t) {
		method, path, _ := strings.Cut(route, " ")
		path = strings.ReplaceAll(path, ":userId", "{userId}")
		if !strings.Contains(html, `<span class="method `+method+`">`+method+`</span><h3 class="path"><code>`+path+`</code>`) {
			t.Errorf("/docs has no section for %s", route)
		}
	}
	for _, want := range []string{
		// A body with its required fields, an error answer, a curl line
		// with the key and an example body that the server accepts.
		`<code class="prop">userId</code><span class="req">required</span>`,
		`<td class="status error">429</td>`,
		`curl -X POST &#34;$PUSHD/api/ws/push/notification&#34;`,
		`-d &#39;{&#34;body&#34;:&#34;from pushd&#34;,&#34;title&#34;:&#34;Hello&#34;,&#34;userId&#34;:&#34;alice&#34;}&#39;`,
		`<h3><code>Envelope</code></h3>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("/docs lacks %s", want)
		}
	}
	for _, external := range []string{"src=\"http", "href=\"http", "@import", "cdn"} {
		if strings.Contains(html, external) {
			t.Errorf("/docs refers to an external resource (%s)", external)
		}
	}
}

func TestRenderDocsRejectsBrokenYAML(t *testing.T) {
	if _, err := renderDocs([]byte("openapi: [unclosed")); err == nil {
		t.Fatal("broken YAML rendered")
	}
}

// TestExchangesMatchOpenAPI sends a request to each REST route (and its
// usual errors) and validates request and answer against openapi.yaml with
// an OpenAPI 3.1 validator: the spec's schemas must describe what the
// server really accepts and answers.
func TestExchangesMatchOpenAPI(t *testing.T) {
	doc, err := libopenapi.NewDocument(pushd.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ts := startTestServer(t, func(o *Options) { o.MaxMessageBytes = 2048 })
	cases := []struct {
		method, path, body string
		auth               bool
		status             int
	}{
		{"POST", "/api/ws/connect", `{"userId":"alice"}`, true, 200},
		{"POST", "/api/ws/connect", `{"userId":""}`, true, 400},
		{"POST", "/api/ws/connect", `{"userId":"alice"}`, false, 401},
		{"POST", "/api/ws/push/notification", `{"userId":"alice","title":"t","body":"b","icon":"i","url":"/u","data":{"k":1}}`, true, 202},
		{"POST", "/api/ws/push/notification", `{"userId":"alice","title":"t","body":"` + strings.Repeat("x", 3000) + `"}`, true, 413},
		{"POST", "/api/ws/push/dashboard", `{"userId":"alice","widgetId":"w","data":[1,2]}`, true, 202},
		{"POST", "/api/ws/push/data-change", `{"userId":"alice","tableId":"t","rowId":"1","action":"delete"}`, true, 202},
		{"POST", "/api/ws/push/audit-log", `{"userId":"alice","entry":"x"}`, true, 202},
		{"POST", "/api/ws/broadcast", `{"title":"t","body":"b","excludeUserIds":["bob"]}`, true, 202},
		{"POST", "/api/ws/push/batch", `{"messages":[{"kind":"notification","userId":"a","title":"t","body":"b"},{"kind":"dashboard","userId":"a","widgetId":"w","data":1},{"kind":"data-change","userId":"a","tableId":"t","rowId":"r","action":"create"},{"kind":"audit-log","userId":"a","entry":{}},{"kind":"broadcast","title":"t","body":"b"}]}`, true, 202},
		{"POST", "/api/ws/push/batch", `{"messages":[]}`, true, 400},
		{"POST", "/api/ws/push/batch", `{"messages":[{"kind":"dashboard","userId":"a","title":"t","body":"b"}]}`, true, 400},
		{"POST", "/api/ws/push/notification", `{"userId":"alice","title":"t","body":"b","bogus":1}`, true, 400},
		{"POST", "/api/ws/push/dashboard", `{"userId":"alice","widgetId":"w"}`, true, 400},
		{"GET", "/api/ws/stats", "", true, 200},
		{"GET", "/api/ws/connections/alice", "", true, 200},
		{"POST", "/api/ws/disconnect/alice", `{"reason":"r"}`, true, 200},
		{"POST", "/api/ws/disconnect/alice", "", true, 200},
		{"GET", "/healthz", "", false, 200},
		{"GET", "/readyz", "", false, 200},
	}
	for _, tc := range cases {
		name := tc.method + " " + tc.path
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if tc.auth {
			req.Header.Set("Authorization", "Bearer k")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", name, resp.StatusCode, body, tc.status)
			continue
		}
		// The validator reads both bodies again.
		req, _ = http.NewRequest(tc.method, "http://localhost:3001"+tc.path, strings.NewReader(tc.body))
		req.Header = resp.Request.Header.Clone()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.Request = req
		ok, verrs := v.ValidateHttpResponse(req, resp)
		if tc.status < 300 {
			// A request the server accepts must be one the spec allows.
			ok, verrs = v.ValidateHttpRequestResponse(req, resp)
		} else if tc.body != "" && tc.status == 400 {
			// And one it refuses as malformed, one the spec refuses.
			if okReq, _ := v.ValidateHttpRequest(req.Clone(req.Context())); okReq {
				t.Errorf("%s: the server answers 400 to %s but openapi.yaml allows it", name, tc.body)
			}
			req.Body = io.NopCloser(strings.NewReader(tc.body))
		}
		if !ok {
			for _, e := range verrs {
				t.Errorf("%s (%d): %s", name, tc.status, e.Error())
				for _, f := range e.SchemaValidationErrors {
					t.Errorf("    %s: %s", f.FieldPath, f.Reason)
				}
			}
		}
	}
}
