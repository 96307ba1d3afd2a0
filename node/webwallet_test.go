package node

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkbank/zkbank/api"
)

// walletServer is the node's real handler (routes) with a node that has not
// started: the wallet's assets and the CORS layer need nothing more.
func walletServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer((&server{n: &Node{name: "v0"}, reg: prometheus.NewRegistry()}).routes())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, acceptEncoding string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	// A bare Transport, so a gzip response is not transparently inflated.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// wasmMagic starts every WebAssembly module.
var wasmMagic = []byte{0x00, 'a', 's', 'm'}

func TestWalletWasmIsCommitted(t *testing.T) {
	gz, err := fs.ReadFile(webFS(), "wallet.wasm.gz")
	if err != nil || len(gz) < 1<<20 {
		t.Fatalf("node/web/wallet.wasm.gz: %d bytes, %v: missing or truncated; run 'go generate ./node' and commit it", len(gz), err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("node/web/wallet.wasm.gz is not gzip: %v", err)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(zr, head); err != nil || !bytes.Equal(head, wasmMagic) {
		t.Fatalf("node/web/wallet.wasm.gz does not hold a wasm module (starts %x, %v)", head, err)
	}
	for _, name := range []string{"wasm_exec.js", "wallet.html", "wallet.js"} {
		if b, err := fs.ReadFile(webFS(), name); err != nil || len(b) == 0 {
			t.Fatalf("node/web/%s: %d bytes, %v", name, len(b), err)
		}
	}
	if !bytes.Contains(wasmExecJS(), []byte("globalThis.Go")) {
		t.Fatal("node/web/wasm_exec.js is not Go's")
	}
}

// The committed module is what this source builds: a change to wallet/,
// client/, ledger/ or cmd/zkbank-wasm/ without 'go generate ./node' would
// otherwise ship a browser wallet running older code than the CLI. Go builds
// are reproducible (-trimpath, -buildvcs=false), so with the Go release that built the
// committed module the rebuild is byte-identical; with another release it
// would differ anyway, and the test skips.
func TestWalletWasmIsBuiltFromThisSource(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the wallet for WebAssembly (about 20 s on a cold cache)")
	}
	built, err := fs.ReadFile(webFS(), "wallet.wasm.goversion")
	if err != nil {
		t.Fatalf("node/web/wallet.wasm.goversion: %v; run 'go generate ./node' and commit node/web", err)
	}
	if v := strings.TrimSpace(string(built)); v != runtime.Version() {
		t.Skipf("the committed module was built by %s and this is %s: a rebuild would differ in any case", v, runtime.Version())
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out := filepath.Join(t.TempDir(), "wallet.wasm")
	// -buildvcs=false as go generate builds it: a commit stamp would make
	// every commit's module differ.
	cmd := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s", "-o", out, "../cmd/zkbank-wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the wallet for WebAssembly: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := fs.ReadFile(webFS(), "wallet.wasm.gz")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Fatalf("node/web/wallet.wasm.gz is stale (%d bytes committed, %d built from this source): run 'go generate ./node' and commit node/web", len(committed), len(fresh))
	}
	js, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "lib", "wasm", "wasm_exec.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(js, wasmExecJS()) {
		t.Fatal("node/web/wasm_exec.js is not this Go release's: run 'go generate ./node' and commit node/web")
	}
}

func TestServesTheBrowserWallet(t *testing.T) {
	srv := walletServer(t)
	resp, body := get(t, srv.URL+PathWallet, "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !bytes.Contains(body, []byte(`id="send-amount"`)) {
		t.Fatalf("/wallet: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, p := range []string{PathWalletJS, PathWasmExec} {
		resp, body := get(t, srv.URL+p, "")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || len(body) == 0 {
			t.Fatalf("%s: %d %q, %d bytes", p, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}

	// A browser accepting gzip gets the committed stream as is.
	resp, gz := get(t, srv.URL+PathWalletWasm, "gzip, deflate, br")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/wasm" || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("/wallet.wasm (gzip): %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	inflated, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	// One that does not (or refuses it with q=0) gets the module itself.
	for _, ae := range []string{"", "identity", "gzip;q=0"} {
		resp, raw := get(t, srv.URL+PathWalletWasm, ae)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/wasm" || resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("/wallet.wasm (Accept-Encoding %q): %d %q %q", ae, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Encoding"))
		}
		if !bytes.HasPrefix(raw, wasmMagic) || !bytes.Equal(raw, inflated) {
			t.Fatalf("/wallet.wasm (Accept-Encoding %q): %d bytes, not the module", ae, len(raw))
		}
	}
	t.Logf("wallet.wasm: %d bytes, %d gzipped", len(inflated), len(gz))
}

func TestCORSPreflightAndHeaders(t *testing.T) {
	srv := walletServer(t)
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+api.PathTransfers, nil)
	req.Header.Set("Origin", "http://127.0.0.1:27101")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, h)
	}
	if h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatal("preflight allows credentials; the API uses none")
	}
	// A plain OPTIONS (not a preflight) still reaches the routes: 405.
	req, _ = http.NewRequest(http.MethodOptions, srv.URL+api.PathTransfers, nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("plain OPTIONS: %d, want 405", resp.StatusCode)
	}
	resp, _ = get(t, srv.URL+PathWalletJS, "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get(api.HeaderNodeName) != "v0" {
		t.Fatalf("answers carry no CORS or node header: %v", resp.Header)
	}
}
