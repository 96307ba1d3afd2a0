package node

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// The dashboard and the other browser pages are embedded in the binary:
// the page files of node/web are served at /<name> (GET /style.css,
// /dashboard.js, ...; servedExt), the dashboard also at / and /dashboard.
// No build step: the pages are plain HTML, CSS and JavaScript.
//
//go:embed all:web
var webRoot embed.FS

// webFS is node/web as a file system rooted at its files.
func webFS() fs.FS {
	sub, err := fs.Sub(webRoot, "web")
	if err != nil {
		panic(err) // "web" is a literal directory of the embed above
	}
	return sub
}

// pageSecurity sets the headers every embedded file is served with: the
// pages load only this node's scripts and styles and talk only to it
// (WebAssembly may be compiled, nothing may be eval'd).
func pageSecurity(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// dashboardHandler serves dashboard.html.
func dashboardHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pageSecurity(w.Header())
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, webFS(), "dashboard.html")
	})
}

// servedExt are the kinds of file GET /{file} serves (the wallet's
// WebAssembly module has its own route, webwallet.go).
var servedExt = map[string]bool{".html": true, ".css": true, ".js": true, ".svg": true, ".png": true, ".ico": true}

// webAssets serves a file of node/web by its name (GET /{file}); anything
// else is a JSON 404 like the rest of the API.
func webAssets() http.Handler {
	files := webFS()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if name == "" || name != path.Base(name) || name[0] == '.' || !servedExt[path.Ext(name)] {
			writeErr(w, http.StatusNotFound, "not_found", "no such page")
			return
		}
		if st, err := fs.Stat(files, name); err != nil || st.IsDir() {
			writeErr(w, http.StatusNotFound, "not_found", "no such page: "+name)
			return
		}
		pageSecurity(w.Header())
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, name)
	})
}
