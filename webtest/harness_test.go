package webtest

// The harness: one real testnet (the zkbank binary, four validator processes)
// shared by every test of the package, and one headless Chromium per test.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// validators is the size of the shared testnet.
const validators = 4

// shared is the testnet every test uses; started by the first test that needs
// it and stopped by TestMain once all tests ran.
var shared struct {
	once sync.Once
	tn   *testnet
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tn := shared.tn; tn != nil {
		if err := tn.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "webtest: stopping the testnet: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		os.RemoveAll(tn.root)
	}
	os.Exit(code)
}

// testnet is a running `zkbank testnet` process.
type testnet struct {
	root    string   // temporary directory holding the binary and the chain
	bin     string   // the zkbank binary
	dir     string   // the testnet directory (genesis, wallets, node homes)
	api     []string // validator i's API base URL
	cmd     *exec.Cmd
	out     *syncBuf
	errb    *syncBuf
	done    chan error
	stopped bool

	restarted []*exec.Cmd // validators a test stopped and started again itself
}

// wallet is the path of a demo wallet of the testnet (alice, bob, carol...).
func (tn *testnet) wallet(name string) string {
	return filepath.Join(tn.dir, "wallets", name+".json")
}

// chain returns the shared testnet, starting it on first use. It skips in
// -short mode, like the testnet package's end-to-end tests.
func chain(t *testing.T) *testnet {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests start a real testnet; skipped in -short mode")
	}
	shared.once.Do(func() { shared.tn, shared.err = startTestnet() })
	if shared.err != nil {
		t.Fatalf("testnet: %v", shared.err)
	}
	return shared.tn
}

func startTestnet() (*testnet, error) {
	root, err := os.MkdirTemp("", "zkbank-webtest-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	tn := &testnet{root: root, dir: filepath.Join(root, "tn"), out: &syncBuf{}, errb: &syncBuf{}, done: make(chan error, 1)}
	if tn.bin, err = buildBinary(root); err != nil {
		return nil, err
	}
	base, err := freePorts(2 * validators)
	if err != nil {
		return nil, err
	}
	for i := range validators {
		tn.api = append(tn.api, fmt.Sprintf("http://127.0.0.1:%d", base+validators+i))
	}
	args := []string{"testnet", "--dir", tn.dir, "--validators", fmt.Sprint(validators), "--accounts", "4",
		"--demo=false", "--reset", "--p2p-port", fmt.Sprint(base), "--api-port", fmt.Sprint(base + validators)}
	tn.cmd = exec.Command(tn.bin, args...)
	tn.cmd.Stdout, tn.cmd.Stderr = tn.out, tn.errb
	tn.cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=")
	if err := tn.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", tn.bin, strings.Join(args, " "), err)
	}
	go func() { tn.done <- tn.cmd.Wait() }()
	start := time.Now()
	deadline := time.After(5 * time.Minute)
	for !strings.Contains(tn.out.String(), "resumes this chain") {
		select {
		case err := <-tn.done:
			tn.stopped = true
			return nil, fmt.Errorf("zkbank testnet exited before it was up (%v)\nstdout:\n%s\nstderr:\n%s", err, tn.out, tail(tn.errb.String(), 20))
		case <-deadline:
			tn.stop()
			return nil, fmt.Errorf("zkbank testnet not up after 5 min\nstderr:\n%s", tail(tn.errb.String(), 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Fprintf(os.Stderr, "webtest: testnet up after %s in %s, dashboard %s/\n", time.Since(start).Round(100*time.Millisecond), tn.dir, tn.api[0])
	return tn, nil
}

// stop sends Ctrl-C to the testnet and waits for every validator to stop.
func (tn *testnet) stop() error {
	if tn.stopped {
		return nil
	}
	tn.stopped = true
	for _, c := range tn.restarted {
		c.Process.Signal(syscall.SIGINT)
	}
	for _, c := range tn.restarted {
		c.Wait()
	}
	tn.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-tn.done:
		if err != nil {
			return fmt.Errorf("zkbank testnet exit: %w\nstderr:\n%s", err, tail(tn.errb.String(), 10))
		}
		return nil
	case <-time.After(40 * time.Second):
		tn.cmd.Process.Kill()
		return errors.New("zkbank testnet did not stop within 40 s of Ctrl-C")
	}
}

// buildBinary returns $ZKBANK_BIN, or builds cmd/zkbank into dir.
func buildBinary(dir string) (string, error) {
	if b := os.Getenv("ZKBANK_BIN"); b != "" {
		return b, nil
	}
	bin := filepath.Join(dir, "zkbank")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/zkbank/zkbank/cmd/zkbank")
	cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/zkbank: %w\n%s", err, out)
	}
	return bin, nil
}

// freePorts finds n consecutive free TCP ports on 127.0.0.1 in 10000-20000,
// below the kernel's ephemeral range (32768+) where outgoing connections
// could take one between the check and the bind.
func freePorts(n int) (int, error) {
	for range 50 {
		base := 10000 + rand.IntN(10000-n)
		ok := true
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports in 10000-20000", n)
}

// cli runs one zkbank command against the testnet to completion.
func (tn *testnet) cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, tn.bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=", "ZKBANK_GENESIS="+filepath.Join(tn.dir, "genesis.json"))
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("zkbank %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ zkbank %s  (exit %d)\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// mustCLI runs a zkbank command that must succeed and returns its stdout.
func (tn *testnet) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, _ := tn.cli(t, args...)
	if code != 0 {
		t.Fatalf("zkbank %s: exit %d", strings.Join(args, " "), code)
	}
	return out
}

var transferIDRe = regexp.MustCompile(`transfer id ([0-9a-f]{64})`)

// ---------------------------------------------------------------------------
// The browser.

// chromeNames are the executables looked up on PATH, in order.
var chromeNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// chromePath finds a Chromium to drive: $ZKBANK_CHROME, else the first of
// chromeNames on PATH. Without one the test skips, except under CI=true
// where a silently skipped browser suite would hide a broken CI image.
func chromePath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ZKBANK_CHROME"); p != "" {
		return p
	}
	for _, n := range chromeNames {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no Chromium found (looked for %s on PATH, and $ZKBANK_CHROME); install it with 'apt-get install chromium'", strings.Join(chromeNames, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the browser tests must run)")
	}
	t.Skip(msg)
	return ""
}

// page is one headless Chromium tab, 1280x900.
type page struct {
	t    *testing.T
	ctx  context.Context
	name string // prefix of this test's screenshot files

	mu         sync.Mutex
	exceptions []string // uncaught exceptions and unhandled rejections
	closed     bool
}

// newPage starts a headless Chromium for test t. Its screenshots are named
// name-STATE.png. Uncaught page exceptions fail the test when it ends.
func newPage(t *testing.T, name string) *page {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests start a real testnet; skipped in -short mode")
	}
	exe := chromePath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	p := &page{t: t, name: name}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browserCtx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(p.logf), chromedp.WithLogf(p.logf))
	// Start the browser now (without a deadline: the first run's context
	// owns the browser), so a broken one fails here and not at the first
	// navigation.
	if err := chromedp.Do(browserCtx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start %s: %v", exe, err)
	}
	ctx, cancelTimeout := context.WithTimeout(browserCtx, 4*time.Minute)
	p.ctx = ctx
	messages := chromedp.Console(browserCtx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			text := m.String()
			if m.URL != "" {
				text += fmt.Sprintf("  (%s:%d)", m.URL, m.Line+1)
			}
			p.logf("browser console %s", text)
			if m.IsException() {
				p.mu.Lock()
				p.exceptions = append(p.exceptions, text)
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			p.screenshot("failed")
		}
		p.mu.Lock()
		p.closed = true
		exc := p.exceptions
		p.mu.Unlock()
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		if len(exc) > 0 {
			t.Errorf("the page threw %d uncaught exception(s):\n%s", len(exc), strings.Join(exc, "\n"))
		}
	})
	return p
}

// logf logs to the test until it ends (chromedp's goroutines may outlive it).
func (p *page) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.t.Logf(format, args...)
	}
}

// open navigates to url and returns the HTTP status of the document.
func (p *page) open(url string) int64 {
	p.t.Helper()
	resp, err := chromedp.RunResponse(p.ctx, chromedp.Navigate(url))
	if err != nil {
		p.t.Fatalf("open %s: %v", url, err)
	}
	return resp.Status
}

// eval evaluates a JavaScript expression in the page into a T.
func eval[T any](p *page, js string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// text returns the innerText of the first element matching the CSS selector,
// and whether there is one.
func (p *page) text(sel string) (string, bool) {
	p.t.Helper()
	v := eval[*string](p, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : null })()`, jsString(sel)))
	if v == nil {
		return "", false
	}
	return *v, true
}

// count returns how many elements match the CSS selector.
func (p *page) count(sel string) int {
	p.t.Helper()
	return eval[int](p, fmt.Sprintf(`document.querySelectorAll(%s).length`, jsString(sel)))
}

// waitFor polls cond every 200 ms until it holds, or fails the test after
// timeout with what describes the wait and the last state seen.
func (p *page) waitFor(timeout time.Duration, what string, cond func() (bool, string)) string {
	p.t.Helper()
	end := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return last
		}
		if time.Now().After(end) {
			p.t.Fatalf("%s: not within %s; last seen:\n%s", what, timeout, last)
		}
		select {
		case <-p.ctx.Done():
			p.t.Fatalf("%s: browser context ended: %v", what, p.ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitText waits until the innerText of the element matching sel contains
// substr, and returns that text.
func (p *page) waitText(sel, substr string, timeout time.Duration) string {
	p.t.Helper()
	return p.waitFor(timeout, fmt.Sprintf("%s shows %q", sel, substr), func() (bool, string) {
		s, ok := p.text(sel)
		if !ok {
			return false, "(no element " + sel + ")"
		}
		return strings.Contains(s, substr), s
	})
}

// waitMatch waits until the innerText of sel matches re, and returns the
// submatches.
func (p *page) waitMatch(sel string, re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	var m []string
	p.waitFor(timeout, fmt.Sprintf("%s matches %s", sel, re), func() (bool, string) {
		s, ok := p.text(sel)
		if !ok {
			return false, "(no element " + sel + ")"
		}
		m = re.FindStringSubmatch(s)
		return m != nil, s
	})
	return m
}

// waitVisible waits until the element matching sel is displayed.
func (p *page) waitVisible(sel string, timeout time.Duration) {
	p.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden" })()`, jsString(sel))
	p.waitFor(timeout, sel+" visible", func() (bool, string) {
		return eval[bool](p, js), "(not visible)"
	})
}

// click clicks the element matching sel with a real mouse event, once it is
// visible.
func (p *page) click(sel string) {
	p.t.Helper()
	p.waitVisible(sel, 30*time.Second)
	if err := chromedp.Do(p.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		p.t.Fatalf("click %s: %v", sel, err)
	}
}

// setValue sets the value of the input or textarea matching sel as typing
// would: through the native setter, then input and change events.
func (p *page) setValue(sel, value string) {
	p.t.Helper()
	p.waitVisible(sel, 30*time.Second)
	js := fmt.Sprintf(`(() => {
		const e = document.querySelector(%s);
		const proto = e instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype :
			e instanceof HTMLSelectElement ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
		Object.getOwnPropertyDescriptor(proto, "value").set.call(e, %s);
		e.dispatchEvent(new Event("input", {bubbles: true}));
		e.dispatchEvent(new Event("change", {bubbles: true}));
		return e.value;
	})()`, jsString(sel), jsString(value))
	if got := eval[string](p, js); got != value {
		p.t.Fatalf("set %s to %q: it holds %q", sel, value, got)
	}
}

// artifacts is where screenshots go: $ZKBANK_ARTIFACTS, else
// webtest/artifacts (git-ignored).
var artifacts struct {
	once sync.Once
	dir  string
	err  error
}

func artifactDir(t *testing.T) string {
	t.Helper()
	artifacts.once.Do(func() {
		dir := os.Getenv("ZKBANK_ARTIFACTS")
		if dir == "" {
			dir = "artifacts"
		}
		if artifacts.dir, artifacts.err = filepath.Abs(dir); artifacts.err == nil {
			artifacts.err = os.MkdirAll(artifacts.dir, 0o755)
		}
		if artifacts.err == nil {
			t.Logf("screenshots go to %s ($ZKBANK_ARTIFACTS, else webtest/artifacts)", artifacts.dir)
		}
	})
	if artifacts.err != nil {
		t.Fatalf("screenshot directory: %v", artifacts.err)
	}
	return artifacts.dir
}

// screenshot writes the full page, at the desktop size, to
// ARTIFACTS/NAME-STATE.png.
func (p *page) screenshot(state string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Errorf("screenshot %s: %v", state, err)
		return
	}
	p.save(state, png)
}

// phoneScreenshot writes the page as a 375x812 phone shows it, then restores
// the desktop viewport.
func (p *page) phoneScreenshot(state string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		if _, err := chromedp.EmulateViewport(375, 812, chromedp.EmulateMobile, chromedp.EmulateScale(2))(ctx, t); err != nil {
			return nil, err
		}
		// Back to the desktop size (EmulateReset leaves the phone's width).
		defer chromedp.EmulateViewport(1280, 900)(ctx, t)
		// Let the layout settle at the new width.
		if _, err := chromedp.Sleep(300*time.Millisecond)(ctx, t); err != nil {
			return nil, err
		}
		return chromedp.FullScreenshot(100)(ctx, t)
	})
	if err != nil {
		p.t.Errorf("phone screenshot %s: %v", state, err)
		return
	}
	p.save(state+"-phone", png)
}

func (p *page) save(state string, png []byte) {
	p.t.Helper()
	f := filepath.Join(artifactDir(p.t), p.name+"-"+state+".png")
	if err := os.WriteFile(f, png, 0o644); err != nil {
		p.t.Errorf("write screenshot: %v", err)
		return
	}
	p.logf("screenshot %s", f)
}

// ---------------------------------------------------------------------------

// syncBuf is a bytes.Buffer safe for a process's writer goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
