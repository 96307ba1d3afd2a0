package webtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// status is the part of GET /v1/status the wallet test reads.
type status struct {
	Height    uint64 `json:"height"`
	Mempool   int    `json:"mempool"`
	Committed uint64 `json:"committed_transfers"`
	Rejected  uint64 `json:"rejected_transfers"`
}

func (tn *testnet) status(t *testing.T) status {
	t.Helper()
	resp, err := http.Get(tn.api[0] + "/v1/status")
	if err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /v1/status: decode: %v", err)
	}
	return st
}

var balanceRe = regexp.MustCompile(`(?m)^\w+: balance (\d+)\.(\d\d) available(?:; (\d+)\.(\d\d) pending)?`)

// balance is `zkbank wallet balance` of a testnet wallet: its available and
// pending balances in cents, decrypted by the CLI.
func (tn *testnet) balance(t *testing.T, name string) (available, pending int) {
	t.Helper()
	out := tn.mustCLI(t, "wallet", "balance", "--wallet", tn.wallet(name), "--node", tn.api[0])
	m := balanceRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no balance line in 'zkbank wallet balance' of %s", name)
	}
	cents := func(units, hundredths string) int {
		if units == "" {
			return 0
		}
		u, _ := strconv.Atoi(units)
		h, _ := strconv.Atoi(hundredths)
		return 100*u + h
	}
	return cents(m[1], m[2]), cents(m[3], m[4])
}

// TestWallet drives the browser wallet at /wallet as a new user: create a
// wallet in the page, open its account, get paid by a testnet wallet (CLI),
// see the pending credit, apply it, send a transfer that commits, be refused
// an overdraft with nothing sent, and export the wallet to a file the CLI
// reads.
func TestWallet(t *testing.T) {
	p := newPage(t, "wallet")
	tn := chain(t)
	url := tn.api[0] + "/wallet"
	if status := p.open(url); status != 200 {
		t.Fatalf("GET %s: HTTP %d", url, status)
	}
	// wallet.wasm loads, then the page shows the setup form.
	p.waitFor(2*time.Minute, "the page is ready (body[data-ready=true])", func() (bool, string) {
		s, _ := p.text("#loading")
		return eval[string](p, `document.body.dataset.ready`) == "true", s
	})
	p.waitVisible("#setup", 10*time.Second)
	p.screenshot("setup")
	p.phoneScreenshot("setup")

	// Create a wallet: the keys are made in the page.
	p.setValue("#wallet-name", "webuser")
	p.click("#create")
	p.waitVisible("#wallet", 2*time.Minute)
	account := p.waitMatch("#account-id", regexp.MustCompile(`^\s*([0-9a-f]{64})\s*$`), 10*time.Second)[1]
	if stored := eval[string](p, `localStorage.getItem("zkbank.wallet") || ""`); !strings.Contains(stored, account) {
		t.Errorf("the wallet is not kept in the browser's local storage")
	}
	p.screenshot("created")

	// Open its account on the chain: zero balance, decrypted in the page.
	p.click("#open")
	p.waitText("#open-result", "opened", time.Minute)
	p.waitText("#balance-available", "0.00", time.Minute)
	p.screenshot("opened")

	// Funds from alice, sent with the CLI to the raw account id, land in
	// the pending balance.
	tn.mustCLI(t, "wallet", "send", "--wallet", tn.wallet("alice"), "--to", account, "--amount", "25.00", "--node", tn.api[0])
	// The CLI returned once the transfer committed; the page reads the
	// balance at the node's applied height, which can be a block behind:
	// refresh until it shows.
	p.waitFor(time.Minute, "#balance-pending shows 25.00 after a refresh", func() (bool, string) {
		if eval[string](p, `document.body.dataset.busy || ""`) != "true" {
			if s, _ := p.text("#balance-pending"); strings.Contains(s, "25.00") {
				return true, s
			}
			p.click("#refresh")
		}
		s, _ := p.text("#balance-pending")
		return false, s
	})
	if s, _ := p.text("#balance-available"); strings.TrimSpace(s) != "0.00" {
		t.Errorf("available balance before apply: %q, want 0.00", s)
	}
	p.screenshot("pending")

	// Apply: the pending credit becomes spendable.
	p.click("#apply")
	p.waitText("#apply-result", "committed", 2*time.Minute)
	p.waitText("#balance-available", "25.00", time.Minute)
	p.waitText("#balance-pending", "0.00", time.Minute)
	p.screenshot("applied")

	// Pay bob from the page; he sees it pending with the CLI.
	bob := tn.accountID(t, "bob")
	bobAvail, bobPending := tn.balance(t, "bob")
	p.setValue("#send-to", bob)
	p.setValue("#send-amount", "10.00")
	p.click("#send")
	p.waitText("#send-result", "committed", 2*time.Minute)
	if s := eval[string](p, `document.getElementById("send-result").dataset.status`); s != "committed" {
		t.Errorf("#send-result status %q, want committed", s)
	}
	p.waitText("#balance-available", "15.00", time.Minute)
	p.screenshot("sent")
	if a, pend := tn.balance(t, "bob"); a != bobAvail || pend != bobPending+1000 {
		t.Errorf("bob after the page's 10.00: available %d, pending %d cents; before: %d, %d", a, pend, bobAvail, bobPending)
	}

	// An overdraft is refused in the page and nothing reaches the chain.
	before := tn.status(t)
	p.setValue("#send-amount", "15.01")
	p.click("#send")
	p.waitFor(time.Minute, "#send-result reports insufficient funds", func() (bool, string) {
		s := eval[string](p, `document.getElementById("send-result").dataset.status || ""`)
		return s == "insufficient_funds", s
	})
	p.waitVisible("#error", 10*time.Second)
	msg, _ := p.text("#error")
	if !strings.Contains(strings.ToLower(msg), "insufficient") {
		t.Errorf("#error after an overdraft: %q", msg)
	}
	if s, _ := p.text("#balance-available"); strings.TrimSpace(s) != "15.00" {
		t.Errorf("available balance after a refused overdraft: %q, want 15.00", s)
	}
	p.screenshot("overdraft-refused")
	p.phoneScreenshot("overdraft-refused")
	// Let a few blocks pass: a transfer the page had submitted anyway would
	// be committed or rejected by then.
	p.waitFor(time.Minute, "the chain advances 3 heights", func() (bool, string) {
		st := tn.status(t)
		return st.Height >= before.Height+3, fmt.Sprint(st.Height)
	})
	after := tn.status(t)
	if after.Committed != before.Committed || after.Rejected != before.Rejected || after.Mempool != 0 {
		t.Errorf("the refused overdraft reached the chain: before %+v, after %+v", before, after)
	}
	if a, pend := tn.balance(t, "bob"); a != bobAvail || pend != bobPending+1000 {
		t.Errorf("bob's balance changed after a refused overdraft: available %d, pending %d cents", a, pend)
	}

	// History lists the committed payment, with the amount this browser sent.
	p.click("#history-refresh")
	p.waitText("#history", "10.00", time.Minute)

	// Export: the downloaded file is a wallet the CLI can use.
	dl := t.TempDir()
	if err := chromedp.Do(p.ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl,
		})
		return err
	})); err != nil {
		t.Fatalf("allow downloads: %v", err)
	}
	p.click("#export")
	exported := filepath.Join(dl, "webuser.json")
	p.waitFor(30*time.Second, "the exported wallet file is downloaded", func() (bool, string) {
		b, err := os.ReadFile(exported)
		return err == nil && json.Valid(b), fmt.Sprint(err)
	})
	// A browser writes downloads world-readable; the CLI wants a wallet file
	// private, as a user would make it.
	if err := os.Chmod(exported, 0o600); err != nil {
		t.Fatal(err)
	}
	out := tn.mustCLI(t, "wallet", "balance", "--wallet", exported, "--node", tn.api[0])
	if !strings.Contains(out, "webuser: balance 15.00 available") {
		t.Errorf("the CLI reading the exported wallet does not see the page's balance 15.00:\n%s", out)
	}
}

// TestWallet_ImportedCard imports the testnet's card wallet into a fresh
// browser by pasting its JSON: the page shows the available credit and the
// limit decrypted here, charges 20.00 to bob (the CLI then reads 480.00 of
// credit left), refuses a charge over the credit left, and says the node is
// unreachable when pointed at a port nothing listens on.
func TestWallet_ImportedCard(t *testing.T) {
	p := newPage(t, "wallet-card")
	tn := chain(t)
	url := tn.api[0] + "/wallet"
	if status := p.open(url); status != 200 {
		t.Fatalf("GET %s: HTTP %d", url, status)
	}
	p.waitFor(2*time.Minute, "the page is ready (body[data-ready=true])", func() (bool, string) {
		s, _ := p.text("#loading")
		return eval[string](p, `document.body.dataset.ready`) == "true", s
	})
	card, bob := tn.accountID(t, "card"), tn.accountID(t, "bob")
	b, err := os.ReadFile(tn.wallet("card"))
	if err != nil {
		t.Fatal(err)
	}
	p.setValue("#import-text", string(b))
	p.click("#import")
	p.waitText("#account-id", card, 30*time.Second)
	p.waitText("#wallet-label", "card", 10*time.Second)

	p.click("#refresh")
	p.waitText("#balance-label", "Available credit", 10*time.Second)
	p.waitText("#balance-available", "500.00", time.Minute)
	p.waitText("#card-limit", "Limit 500.00, spent 0.00", 10*time.Second)
	p.screenshot("imported")

	p.setValue("#send-to", bob)
	p.setValue("#send-amount", "20.00")
	p.click("#send")
	p.waitText("#send-result", "committed", 2*time.Minute)
	p.waitText("#balance-available", "480.00", time.Minute)
	p.waitText("#card-limit", "spent 20.00", 10*time.Second)
	out := tn.mustCLI(t, "wallet", "available", "--wallet", tn.wallet("card"), "--node", tn.api[0])
	if !strings.Contains(out, "available credit 480.00") {
		t.Errorf("the CLI does not read the page's charge:\n%s", out)
	}
	p.screenshot("charged")

	// Over the credit left: refused, and the credit is unchanged.
	p.setValue("#send-amount", "480.01")
	p.click("#send")
	p.waitFor(2*time.Minute, "#send-result reports the charge not committed", func() (bool, string) {
		s := eval[string](p, `document.getElementById("send-result").dataset.status || ""`)
		busy := eval[string](p, `document.body.dataset.busy || ""`)
		return s != "committed" && s != "" && busy != "true", s
	})
	res, _ := p.text("#send-result")
	msg, _ := p.text("#error")
	t.Logf("over-limit charge: #send-result %q, #error %q", res, msg)
	if s := eval[string](p, `document.getElementById("send-result").dataset.status`); s != "insufficient_funds" {
		t.Errorf("over-limit charge: #send-result status %q, want insufficient_funds (refused before sending)", s)
	}
	if !eval[bool](p, `!document.getElementById("error").hidden`) || !strings.Contains(msg, "nothing was sent") {
		t.Errorf("over-limit charge: #error %q does not say nothing was sent", msg)
	}
	out = tn.mustCLI(t, "wallet", "available", "--wallet", tn.wallet("card"), "--node", tn.api[0])
	if !strings.Contains(out, "available credit 480.00") {
		t.Errorf("the over-limit charge moved credit:\n%s", out)
	}
	p.screenshot("over-limit")

	// Node down: an error state, not a stale balance presented as fresh.
	closed, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	p.setValue("#node-url", fmt.Sprintf("http://127.0.0.1:%d", closed))
	p.click("#refresh")
	p.waitFor(time.Minute, "#error reports the node unreachable", func() (bool, string) {
		code := eval[string](p, `document.getElementById("error").dataset.code || ""`)
		s, _ := p.text("#error")
		return code == "unreachable" && strings.Contains(s, "Cannot reach the node"), code + ": " + s
	})
	p.screenshot("node-unreachable")
}
