package server

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
)

// The web UI is hand-written HTML, CSS and JavaScript modules, embedded in
// the binary: no build step and nothing fetched from elsewhere.

//go:embed ui
var uiFS embed.FS

//go:embed openapi.yaml
var openAPISpec []byte

var indexTemplate = template.Must(template.ParseFS(uiFS, "ui/index.html"))

// assets serves the UI's static files.
func assets() http.Handler {
	sub, err := fs.Sub(uiFS, "ui")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// index serves the UI's page, which knows the base path from a meta tag.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	if err := indexTemplate.Execute(&b, map[string]string{"Base": s.cfg.BasePath, "Version": s.cfg.Version}); err != nil {
		writeError(w, classify(err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
	_, _ = w.Write(b.Bytes())
}
