package api

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/pushd/pushd/client"
)

// web holds the demo dashboard; the client it uses is package client's.
//
//go:embed web
var web embed.FS

// documentedAssets are the files of web/ that openapi.yaml describes.
var documentedAssets = map[string]bool{"/": true, "/client.js": true, "/client.d.ts": true, "/react.js": true, "/react.d.ts": true}

// registerStatic serves every file of web/ and of the browser client's
// package (client/) at /<name>, and index.html at /. Files are revalidated
// by ETag so a new pushd version is picked up at once.
func (s *Server) registerStatic() {
	files, _ := fs.Sub(web, "web")
	s.serveFiles(files)
	s.serveFiles(client.Files)
}

func (s *Server) serveFiles(files fs.FS) {
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		urlPath := "/" + p
		if p == "index.html" {
			urlPath = "/"
		}
		s.handle("GET", urlPath, staticFile(p, data))
		s.routes[len(s.routes)-1].asset = !documentedAssets[urlPath]
		return nil
	})
}

func staticFile(name string, data []byte) http.Handler {
	sum := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	ctype := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".js", ".ts":
		ctype = "text/javascript; charset=utf-8"
	case ".html":
		ctype = "text/html; charset=utf-8"
	case ".yaml":
		ctype = "application/yaml; charset=utf-8"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.Contains(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", ctype)
		_, _ = w.Write(data)
	})
}
