package node

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/zkbank/zkbank/api"
)

// The browser wallet (node/web/wallet.*): the wallet and client packages
// compiled to WebAssembly (cmd/zkbank-wasm), with the page that drives it.
// The gzipped wasm is generated and committed, so the node binary serves it
// with no build step; web/wallet.wasm.goversion records the Go release that
// built it, so that TestWalletWasmIsBuiltFromThisSource can rebuild it and
// compare:
//
//go:generate sh -c "GOOS=js GOARCH=wasm go build -trimpath -buildvcs=false -ldflags=-s -o web/wallet.wasm ../cmd/zkbank-wasm && gzip -9 -n -f web/wallet.wasm && cp \"$(go env GOROOT)/lib/wasm/wasm_exec.js\" web/wasm_exec.js && go env GOVERSION > web/wallet.wasm.goversion"

// webFile is a file of node/web (embedded once, by web.go).
func webFile(name string) func() []byte {
	return sync.OnceValue(func() []byte {
		b, err := fs.ReadFile(webFS(), name)
		if err != nil {
			panic(err) // a literal name of a committed file (TestWalletWasmIsCommitted)
		}
		return b
	})
}

var (
	walletHTML   = webFile("wallet.html")
	walletJS     = webFile("wallet.js")
	walletWasmGz = webFile("wallet.wasm.gz")
	wasmExecJS   = webFile("wasm_exec.js")
)

// Paths of the browser wallet's assets.
const (
	PathWallet     = "/wallet"
	PathWalletJS   = "/wallet.js"
	PathWalletWasm = "/wallet.wasm"
	PathWasmExec   = "/wasm_exec.js"
)

// walletRoutes adds the browser wallet's pages to mux.
func walletRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathWallet, asset(walletHTML, "text/html; charset=utf-8"))
	mux.HandleFunc("GET "+PathWalletJS, asset(walletJS, "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET "+PathWasmExec, asset(wasmExecJS, "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET "+PathWalletWasm, serveWasm)
}

func asset(b func() []byte, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		walletSecurity(w.Header())
		_, _ = w.Write(b())
	}
}

// walletSecurity is pageSecurity (web.go) for the wallet page, which must
// reach every validator's API (connect-src), not only this node.
func walletSecurity(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' http: https:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// serveWasm sends the committed gzip stream as is to a browser that accepts
// gzip, and inflates it for one that does not.
func serveWasm(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/wasm")
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept-Encoding")
	h.Set("X-Content-Type-Options", "nosniff")
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		_, _ = w.Write(walletWasmGz())
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(walletWasmGz()))
	if err != nil {
		http.Error(w, "wallet.wasm: corrupt embedded asset: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = io.Copy(w, zr)
}

func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		enc, params, _ := strings.Cut(part, ";")
		if enc = strings.TrimSpace(enc); !strings.EqualFold(enc, "gzip") && enc != "*" {
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// cors lets pages served by any node (the browser wallet) call this node's
// API: the wallet talks to every validator. The API uses no cookies or
// other credentials, so any origin may read its answers; preflights are
// answered here, before the method-matching routes.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Accept")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", api.HeaderNodeName)
		next.ServeHTTP(w, r)
	})
}
