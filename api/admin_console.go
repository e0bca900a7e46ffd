package api

import (
	"embed"
	"net/http"
)

// adminFiles are the admin console's page, script and styles: no build
// step, nothing loaded from elsewhere.
//
//go:embed admin
var adminFiles embed.FS

// adminCSP keeps the console to its own files and its own origin's API.
const adminCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// registerAdminConsole serves the console at /admin. The page is public
// (it holds no data); everything it shows comes from the REST API, called
// with the API key the operator enters.
func (s *Server) registerAdminConsole() {
	for _, f := range []struct{ url, name string }{
		{"/admin", "admin/index.html"},
		{"/admin/admin.js", "admin/admin.js"},
		{"/admin/admin.css", "admin/admin.css"},
	} {
		data, err := adminFiles.ReadFile(f.name)
		if err != nil {
			panic(err) // embedded at build time
		}
		file := staticFile(f.name, data)
		s.handle("GET", f.url, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Security-Policy", adminCSP)
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			file.ServeHTTP(w, r)
		}))
		s.routes[len(s.routes)-1].asset = f.url != "/admin"
	}
}
