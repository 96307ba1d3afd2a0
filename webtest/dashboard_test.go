package webtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var heightRe = regexp.MustCompile(`^\s*(\d+)\s*$`)

// height reads the chain height the dashboard shows, or -1 before it shows one.
func (p *page) height() int {
	p.t.Helper()
	s, _ := p.text("#height")
	m := heightRe.FindStringSubmatch(s)
	if m == nil {
		return -1
	}
	h, _ := strconv.Atoi(m[1])
	return h
}

// accountID returns the account id of a testnet wallet, from `zkbank wallet show`.
func (tn *testnet) accountID(t *testing.T, name string) string {
	t.Helper()
	out := tn.mustCLI(t, "wallet", "show", "--wallet", tn.wallet(name))
	m := regexp.MustCompile(`(?m)^account\s+([0-9a-f]{64})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no account id in 'zkbank wallet show' of %s", name)
	}
	return m[1]
}

// TestDashboard opens validator 0's dashboard and follows the live chain: the
// height advances without a reload, the four validators are listed, blocks
// appear, a transfer sent with the CLI shows up in its block as an envelope,
// and looking it up by id shows it committed.
func TestDashboard(t *testing.T) {
	p := newPage(t, "dashboard")
	tn := chain(t)
	url := tn.api[0] + "/"
	if status := p.open(url); status != 200 {
		t.Fatalf("GET %s: HTTP %d", url, status)
	}
	p.waitText("#status-banner", "live", 30*time.Second)

	// The height advances over the event stream: no reload happens here.
	var h1 int
	p.waitFor(30*time.Second, "#height shows a height", func() (bool, string) {
		h1 = p.height()
		return h1 > 0, fmt.Sprint(h1)
	})
	p.waitFor(30*time.Second, fmt.Sprintf("#height advances past %d", h1+1), func() (bool, string) {
		h := p.height()
		return h > h1+1, fmt.Sprint(h)
	})

	// Four validators, each with a name and its work credits.
	p.waitFor(30*time.Second, "#validators lists 4 validators", func() (bool, string) {
		n := p.count("#validators tbody tr")
		return n == validators, fmt.Sprintf("%d rows", n)
	})
	rows := eval[[][]string](p, `[...document.querySelectorAll("#validators tbody tr")].map(r => [...r.cells].map(c => c.innerText.trim()))`)
	for i, r := range rows {
		if len(r) < 3 || r[0] != strconv.Itoa(i) || r[1] == "" {
			t.Errorf("validator row %d: %q", i, r)
			continue
		}
		if _, err := strconv.Atoi(r[2]); err != nil {
			t.Errorf("validator row %d: work credits %q are not a number", i, r[2])
		}
	}
	// Proposers are credited as heights go by, the latest one marked.
	p.waitFor(30*time.Second, "#validators credits proposed heights", func() (bool, string) {
		n := eval[int](p, `[...document.querySelectorAll("#validators tbody td.proposed")].reduce((s, c) => s + (parseInt(c.innerText, 10) || 0), 0)`)
		cur := p.count(`#validators tbody tr[aria-current="true"]`)
		return n >= 1 && cur == 1, fmt.Sprintf("%d heights proposed, %d rows marked latest proposer", n, cur)
	})
	if empty := eval[bool](p, `document.getElementById("validators-empty").hidden`); !empty {
		t.Error(`"No validators known yet." still shown next to the validator table`)
	}

	// Recent blocks appear, newest first.
	p.waitFor(30*time.Second, "#blocks lists 2 blocks", func() (bool, string) {
		n := p.count("#blocks li.block")
		return n >= 2, fmt.Sprintf("%d blocks", n)
	})
	hs := eval[[]string](p, `[...document.querySelectorAll("#blocks li.block")].map(b => b.dataset.height)`)
	if a, _ := strconv.Atoi(hs[0]); a <= 0 || hs[0] == hs[1] {
		t.Errorf("recent blocks' heights: %q", hs)
	} else if b, _ := strconv.Atoi(hs[1]); b >= a {
		t.Errorf("recent blocks not newest first: %q", hs)
	}
	p.screenshot("live")

	// A transfer sent with the CLI appears as an envelope of its block: who
	// paid whom, never an amount.
	alice, carol := tn.accountID(t, "alice"), tn.accountID(t, "carol")
	out := tn.mustCLI(t, "wallet", "send", "--wallet", tn.wallet("alice"), "--to", tn.wallet("carol"), "--amount", "7.25", "--node", tn.api[0])
	m := transferIDRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no transfer id in the output of zkbank wallet send")
	}
	id := m[1]
	env := fmt.Sprintf(`.envelope[data-id=%q]`, id)
	p.waitFor(30*time.Second, "the transfer's envelope is listed in #blocks", func() (bool, string) {
		return p.count(env) == 1, fmt.Sprintf("%d envelopes with id %s", p.count(env), id)
	})
	who := eval[string](p, fmt.Sprintf(`document.querySelector(%s + " .who").title`, jsString(env)))
	if !strings.Contains(who, alice) || !strings.Contains(who, carol) {
		t.Errorf("envelope of %s: %q does not name payer %s and payee %s", id, who, alice, carol)
	}
	block := eval[string](p, fmt.Sprintf(`document.querySelector(%s).closest("li.block").innerText`, jsString(env)))
	if strings.Contains(block, "7.25") {
		t.Errorf("the block listing shows the amount:\n%s", block)
	}
	p.waitFor(30*time.Second, "#committed counts the transfer", func() (bool, string) {
		s, _ := p.text("#committed")
		n, err := strconv.Atoi(strings.TrimSpace(s))
		return err == nil && n >= 1, s
	})

	// The charts plot the transfer: a finality line and its summary.
	p.waitText("#chart-finality-summary", " ms", 30*time.Second)
	if n := p.count("#chart-finality path.line"); n != 1 {
		t.Errorf("#chart-finality has %d lines, want 1", n)
	}
	if n := p.count("#chart-tps path.line"); n != 2 {
		t.Errorf("#chart-tps has %d lines, want 2 (committed, rejected)", n)
	}

	// Look the transfer up by id in the form.
	p.setValue("#lookup-id", id)
	p.click("#lookup-button")
	p.waitText("#lookup-result .transfer-status", "committed", 30*time.Second)
	res, _ := p.text("#lookup-result")
	if !strings.Contains(res, alice) || !strings.Contains(res, carol) {
		t.Errorf("lookup of %s does not name payer and payee:\n%s", id, res)
	}
	p.screenshot("lookup")
	p.phoneScreenshot("lookup")

	// A malformed id is refused in the page; an id nobody submitted is unknown.
	p.setValue("#lookup-id", "not-an-id")
	p.click("#lookup-button")
	p.waitText("#lookup-result", "64 hexadecimal digits", 10*time.Second)
	p.setValue("#lookup-id", strings.Repeat("ab", 32))
	p.click("#lookup-button")
	p.waitText("#lookup-result .transfer-status", "unknown", 10*time.Second)
}

// TestDashboard_NodeDown follows validator 3's dashboard while validator 3
// stops: the page says the node is unreachable instead of showing a frozen
// chain, and once the node is started again it goes back to live by itself
// (no reload) and the height advances again.
func TestDashboard_NodeDown(t *testing.T) {
	p := newPage(t, "dashboard")
	tn := chain(t)
	const down = validators - 1
	if status := p.open(tn.api[down] + "/"); status != 200 {
		t.Fatalf("GET %s/: HTTP %d", tn.api[down], status)
	}
	p.waitText("#status-banner", "live", 30*time.Second)
	home := filepath.Join(tn.dir, fmt.Sprintf("node-%d", down))
	b, err := os.ReadFile(filepath.Join(home, "node.pid"))
	if err != nil {
		t.Fatalf("validator %d's pid: %v", down, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("validator %d's pid file: %q", down, b)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop validator %d (pid %d): %v", down, pid, err)
	}
	p.waitFor(time.Minute, "#status-banner reports the node unreachable", func() (bool, string) {
		s, _ := p.text("#status-banner")
		state := eval[string](p, `document.getElementById("status-banner").dataset.state`)
		return state == "unreachable" && strings.Contains(s, "unreachable"), state + ": " + s
	})
	p.screenshot("node3-down")
	// Wait for the process to be gone before its home is reused.
	p.waitFor(time.Minute, fmt.Sprintf("validator %d (pid %d) exits", down, pid), func() (bool, string) {
		return syscall.Kill(pid, 0) != nil, "still running"
	})

	// Start it again as the testnet did (minus the testnet's lifeline: this
	// process is stopped by TestMain instead).
	logf, err := os.OpenFile(filepath.Join(home, "node.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(tn.bin, "node", "--home", home)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart validator %d: %v", down, err)
	}
	tn.restarted = append(tn.restarted, cmd)
	p.waitText("#status-banner", "live", 2*time.Minute)
	h1 := p.height()
	p.waitFor(time.Minute, fmt.Sprintf("#height advances past %d after the restart", h1), func() (bool, string) {
		h := p.height()
		return h > h1, fmt.Sprint(h)
	})
	p.screenshot("node3-back")
}
