package testnet

// End-to-end lending: the real zkbank binary, a real 4-validator testnet,
// two `zkbank bot` processes with their own pools and policies, and a
// borrower driving the wallet CLI (skipped with -short, like the other
// end-to-end test).
//
//	go test -run TestE2E_LendingBot -v ./testnet/

import (
	"encoding/json"
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

	"github.com/zkbank/zkbank/ledger"
)

// liveBot is a `zkbank bot` process of the test.
type liveBot struct {
	out, log *syncBuf
	stop     func()
}

// startBot runs `zkbank bot` until stopped or the test ends; its stdout and
// log grow in out and log.
func startBot(t *testing.T, bin string, args ...string) *liveBot {
	t.Helper()
	b := &liveBot{out: &syncBuf{}, log: &syncBuf{}}
	cmd := exec.Command(bin, append([]string{"bot"}, args...)...)
	cmd.Stdout, cmd.Stderr = b.out, b.log
	cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
		t.Logf("bot %s log:\n%s", strings.Join(args[:4], " "), b.log.String())
	}
	t.Cleanup(b.stop)
	waitFor(t, "bot start", 30*time.Second, func() bool { return strings.Contains(b.out.String(), "policy sha256") })
	return b
}

// waitFor polls cond every 500 ms until it holds, failing after deadline
// (generous: nothing is timed, only bounded).
func waitFor(t *testing.T, what string, deadline time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not seen within %s", what, deadline)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func accountOf(t *testing.T, walletPath string) string {
	t.Helper()
	b, err := os.ReadFile(walletPath)
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		Account string `json:"account_id"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	return w.Account
}

var scoreRe = regexp.MustCompile(`credit score (\d+) \(height`)

// score runs `wallet score` and returns the decrypted score.
func score(t *testing.T, bin, walletPath string) (uint64, string) {
	t.Helper()
	code, out, _ := cli(t, bin, "wallet", "score", "--wallet", walletPath)
	m := scoreRe.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("wallet score failed:\n%s", out)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v, out
}

// hasLine reports whether one line of logs contains every part.
func hasLine(logs string, parts ...string) bool {
	for _, l := range strings.Split(logs, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// decisionLines are the bot's decision log lines about applicant.
func decisionLines(logs, applicant string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "msg=decision") && strings.Contains(l, "applicant="+applicant) {
			out = append(out, l)
		}
	}
	return out
}

func TestE2E_LendingBot(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end testnet in -short mode")
	}
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	base := freePorts(t, 8)
	tn := startTestnet(t, bin, "--dir", dir, "--validators", "4", "--accounts", "2", "--demo=false",
		"--p2p-port", fmt.Sprint(base), "--api-port", fmt.Sprint(base+4))
	node0 := fmt.Sprintf("http://127.0.0.1:%d", base+4)
	w := func(name string) string { return filepath.Join(dir, "wallets", name+".json") }
	mustContain(t, "summary", tn.out.String(), "lending (docs/LENDING.md)", "no bot: --demo=false", "zkbank wallet loan apply")

	// Two lenders on one chain, each with its own pool and policy: the
	// issuer decides on one bit, bob reads scores.
	const interval = 30 // short: the default is seen once the chain passes the second due height
	policy := filepath.Join(dir, "strict.json")
	os.WriteFile(policy, []byte(fmt.Sprintf(`{"name": "e2e-lender", "mode": "decision", "min_score": 250000, "amount": "90.00",
  "installments": 2, "interval": %d, "max_open_loans": 4}`, interval)), 0o644)
	scorePolicy := filepath.Join(dir, "reader.json")
	os.WriteFile(scorePolicy, []byte(`{"name": "e2e-reader", "mode": "score", "min_score": 280000, "amount": "10.00",
  "installments": 1, "interval": 30, "max_open_loans": 1}`), 0o644)
	bot := startBot(t, bin, "--wallet", w("issuer"), "--policy", policy, "--node", node0, "--state", filepath.Join(dir, "issuer.bot.json"), "--poll", "300ms")
	botLog := bot.log
	mustContain(t, "bot banner", bot.out.String(), fmt.Sprintf("lender e2e-lender (decision mode, min_score 250000): 90.00 in 2 installments, every %d heights", interval))
	hash := regexp.MustCompile(`policy sha256 ([0-9a-f]{64})`).FindStringSubmatch(bot.out.String())[1]
	// The score lender's pool is a new, empty account.
	empty := filepath.Join(t.TempDir(), "empty.json")
	cli(t, bin, "wallet", "create", "--name", "empty", "--out", empty)
	if code, _, _ := cli(t, bin, "wallet", "open", "--wallet", empty, "--node", node0); code != 0 {
		t.Fatal("open failed")
	}
	reader := startBot(t, bin, "--wallet", empty, "--policy", scorePolicy, "--node", node0, "--state", filepath.Join(dir, "empty.bot.json"))

	p := ledger.DefaultScoreParams // the testnet's genesis names no weights
	alice := accountOf(t, w("alice"))
	s0, out := score(t, bin, w("alice"))
	if s0 != p.Score(100000, 0, 0) {
		t.Fatalf("alice's score %d, want %d:\n%s", s0, p.Score(100000, 0, 0), out)
	}

	// A below-minimum applicant is refused by its own wallet, nothing sent:
	// a fresh account (0.00 available) scores only the public part.
	zoe := filepath.Join(t.TempDir(), "zoe.json")
	cli(t, bin, "wallet", "create", "--name", "zoe", "--out", zoe)
	if code, _, _ := cli(t, bin, "wallet", "open", "--wallet", zoe, "--node", node0); code != 0 {
		t.Fatal("open failed")
	}
	code, _, stderr := cli(t, bin, "wallet", "loan", "apply", "--wallet", zoe, "--lender", w("issuer"), "--policy", hash, "--min", "250000", "--node", node0)
	if code != 1 {
		t.Fatalf("below-minimum apply exit %d", code)
	}
	oneLine(t, stderr, fmt.Sprintf("your score %d is below", p.PublicPart(0)), "minimum 250000", "nothing was sent")
	_, out, _ = cli(t, bin, "wallet", "history", "--wallet", zoe, "--node", node0)
	mustContain(t, "zoe's history", out, "no transfers for zoe yet")

	// A check proving less than the policy's minimum reaches the bot (the
	// wallet knew only the hash), which refuses it and says why.
	zoeID := accountOf(t, zoe)
	code, out, _ = cli(t, bin, "wallet", "loan", "apply", "--wallet", zoe, "--lender", w("issuer"), "--policy", hash, "--min", "150000", "--node", node0)
	if code != 0 {
		t.Fatalf("apply with a low minimum failed:\n%s", out)
	}
	mustContain(t, "low apply", out, "accepted in block", "your score is at least 150000")
	waitFor(t, "the bot's refusal", time.Minute, func() bool { return len(decisionLines(botLog.String(), zoeID)) == 1 })
	mustContain(t, "refusal", decisionLines(botLog.String(), zoeID)[0], "mode=decision", "decision=refuse",
		`reason="the check proves score >= 150000, below this policy's min_score 250000"`)

	// The borrower applies (decision mode); the bot funds it.
	code, out, _ = cli(t, bin, "wallet", "loan", "apply", "--wallet", w("alice"), "--lender", w("issuer"), "--policy", policy, "--wait-loan")
	if code != 0 {
		t.Fatalf("apply failed:\n%s", out)
	}
	mustContain(t, "apply", out, "score 300000 at height", "accepted in block", "your score is at least 250000", "funded in block")
	loan := regexp.MustCompile(`loan ([0-9a-f]{64})`).FindStringSubmatch(out)[1]
	waitFor(t, "the bot's funding decision", time.Minute, func() bool { return len(decisionLines(botLog.String(), alice)) == 1 })
	mustContain(t, "decision", decisionLines(botLog.String(), alice)[0], "mode=decision", "decision=fund",
		`reason="check accepted: score >= 250000 (min_score 250000) under this policy; lent 90.00`, "loan="+loan)
	_, out, _ = cli(t, bin, "wallet", "loans", "--wallet", w("alice"))
	mustContain(t, "loans", out, "1 open loan(s), 0 default(s)", loan[:16], "90.00", "0 of 2", "45.00")

	// The bot restarted with its state lost rescans the chain: the
	// application it funded is not funded twice, and it follows the loan.
	bot.stop()
	mustContain(t, "stopped bot", botLog.String(), `msg="lender stopped"`)
	bot = startBot(t, bin, "--wallet", w("issuer"), "--policy", policy, "--node", node0, "--state", filepath.Join(dir, "issuer.bot2.json"),
		"--poll", "300ms", "--lookback", "1000")
	botLog = bot.log
	waitFor(t, "the restarted bot's decision", time.Minute, func() bool { return len(decisionLines(botLog.String(), alice)) == 1 })
	mustContain(t, "restarted decision", decisionLines(botLog.String(), alice)[0], "decision=refuse",
		`reason="application already funded by this lender (loan `+loan[:16]+`)"`)

	// Installment 1 repaid on time: R grows by the amount (and A shrinks by it).
	code, out, _ = cli(t, bin, "wallet", "loan", "repay", "--wallet", w("alice"), "--loan", loan[:12])
	if code != 0 {
		t.Fatalf("repay failed:\n%s", out)
	}
	mustContain(t, "repay", out, "repaying 45.00 on loan", "installment 1 of 2", "installment 1 repaid on time", "alice: balance 955.00 available; 90.00 pending")
	s1, out := score(t, bin, w("alice"))
	if want := s0 - p.Avail*4500 + p.Repaid*4500; s1 != want {
		t.Fatalf("score after an on-time repayment %d, want %d:\n%s", s1, want, out)
	}
	mustContain(t, "score after repaying", out, fmt.Sprintf("+ %d x repaid on time 45.00", p.Repaid), fmt.Sprintf("%d  (derived)", p.Repaid*4500))
	waitFor(t, "the bot seeing the repayment", time.Minute, func() bool {
		return hasLine(botLog.String(), `msg="installment repaid on time"`, "loan="+loan, `installment="1 of 2"`)
	})

	// Installment 2 is missed: once its due height passes, a default.
	// Blocks come slower on a loaded machine: the wait is for heights, and
	// generous in time.
	waitFor(t, "the default in the bot's log", 8*time.Minute, func() bool {
		return hasLine(botLog.String(), `msg="loan closed"`, "loan="+loan, "paid=1 missed=1")
	})
	if !hasLine(botLog.String(), `msg="installment missed: default recorded"`, "loan="+loan, `installment="2 of 2"`, "borrower_defaults=1") {
		t.Fatalf("no default line for installment 2:\n%s", botLog.String())
	}
	_, out, _ = cli(t, bin, "wallet", "loans", "--wallet", w("alice"))
	mustContain(t, "loans after the default", out, "0 open loan(s), 1 default(s)")
	s2, out := score(t, bin, w("alice"))
	if s2 != s1-p.Penalty {
		t.Fatalf("score after a default %d, want %d - %d:\n%s", s2, s1, p.Penalty, out)
	}
	mustContain(t, "score after the default", out, fmt.Sprintf("+ %d x max(0, grace %d - 1 defaults)", p.Penalty, p.Grace))

	// The score lender decided nothing about checks to another pool; a
	// borrower sharing its score with it is approved by score, and refused
	// because its pool is empty.
	if len(decisionLines(reader.log.String(), alice)) != 0 || len(decisionLines(reader.log.String(), zoeID)) != 0 {
		t.Fatalf("the score lender decided on someone else's application:\n%s", reader.log.String())
	}
	code, out, _ = cli(t, bin, "wallet", "loan", "apply", "--wallet", w("bob"), "--lender", empty, "--share-score", "--policy", scorePolicy)
	if code != 0 {
		t.Fatalf("share-score apply failed:\n%s", out)
	}
	mustContain(t, "share-score", out, "submitted (nonce 1", "recorded by height", "this consent is also a loan application")
	bob := accountOf(t, w("bob"))
	waitFor(t, "the score lender's decision", time.Minute, func() bool { return len(decisionLines(reader.log.String(), bob)) == 1 })
	mustContain(t, "score decision", decisionLines(reader.log.String(), bob)[0], "mode=score", "decision=refuse", "via=consent",
		`reason="pool funds exhausted: available 0.00, loan 10.00"`)
	_, out, _ = cli(t, bin, "wallet", "consent", "list", "--wallet", w("bob"))
	mustContain(t, "consents", out, "score  1", "live")
	tn.stop(t)
}
