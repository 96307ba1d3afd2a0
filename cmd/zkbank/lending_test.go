package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

const decisionPolicy = `{"name": "p", "mode": "decision", "min_score": 250000, "amount": "100.00", "installments": 3, "interval": 30, "max_open_loans": 2}`

func policyFile(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLendingUsageErrorsAreOneLineExit2(t *testing.T) {
	alice, _ := sharedWallets(t)
	pol := policyFile(t, decisionPolicy)
	hash := strings.Repeat("ab", 32)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", alice}, []string{"give --policy", "or --share-score"}},
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", alice, "--share-score", "--min", "5"}, []string{"--min applies to a check"}},
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", "nobody", "--share-score"}, []string{`--lender "nobody"`}},
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", alice, "--policy", hash}, []string{"--policy is a hash", "--min"}},
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", alice, "--policy", pol, "--min", "5"}, []string{"--min 5 is below the policy's min_score 250000"}},
		{[]string{"wallet", "loan", "apply", "--lender", alice, "--policy", pol}, []string{"flag --wallet is required"}},
		{[]string{"wallet", "loan", "repay", "--wallet", alice, "--loan", "zz"}, []string{"--loan"}},
		{[]string{"wallet", "loan", "repay", "--wallet", alice, "--loan", "abcdefzz"}, []string{"not hex"}},
		{[]string{"wallet", "loan", "repay", "--wallet", alice, "--loan", "abcdef12", "--amount", "1.234"}, []string{"at most 2 decimals"}},
		{[]string{"wallet", "loan", "frob"}, []string{`unknown command "frob"`}},
		{[]string{"wallet", "consent", "grant", "--wallet", alice, "--lender", hash, "--expiry-in", "0"}, []string{"--expiry-in 0"}},
		{[]string{"wallet", "consent", "revoke", "--wallet", alice}, []string{"flag --lender is required"}},
		{[]string{"bot", "--wallet", alice}, []string{"flag --policy is required"}},
		{[]string{"bot", "--wallet", alice, "--policy", pol, "--poll", "1ms"}, []string{"--poll 1ms"}},
		{[]string{"bot", "--wallet", alice, "--policy", pol, "--log-format", "xml"}, []string{"--log-format"}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, stderr := zk(t, c.args...)
			oneErrorLine(t, code, stderr, 2, c.want...)
		})
	}
}

func TestLendingRefusalsAreOneLine(t *testing.T) {
	alice, _ := sharedWallets(t)
	_, gen := fakeChain(t)
	dec := policyFile(t, decisionPolicy)
	score := policyFile(t, strings.Replace(decisionPolicy, `"decision"`, `"score"`, 1))
	bad := policyFile(t, strings.Replace(decisionPolicy, `"interval": 30`, `"interval": 2`, 1))
	lender := strings.Repeat("cd", 32)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"bot", "--wallet", alice, "--policy", bad, "--genesis", gen}, []string{"invalid lending policy", "interval 2"}},
		{[]string{"bot", "--wallet", alice, "--policy", filepath.Join(t.TempDir(), "none.json")}, []string{"policy file", "no such file"}},
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", lender, "--policy", dec, "--share-score"}, []string{"decides on one bit", "nothing was sent"}},
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", lender, "--policy", score}, []string{"reads the score itself", "--share-score", "nothing was sent"}},
		{[]string{"wallet", "loan", "apply", "--wallet", alice, "--lender", lender, "--policy", dec, "--genesis", gen}, []string{"unknown lender account " + lender, "nothing was sent"}},
		{[]string{"wallet", "consent", "grant", "--wallet", alice, "--lender", lender, "--genesis", gen}, []string{"unknown lender account " + lender, "nothing was sent"}},
		{[]string{"wallet", "score", "--wallet", alice, "--genesis", gen}, []string{"unknown account"}},
	} {
		t.Run(strings.Join(c.args[:3], " "), func(t *testing.T) {
			code, _, stderr := zk(t, c.args...)
			oneErrorLine(t, code, stderr, 1, c.want...)
		})
	}
}

func TestLendingHelpExplainsTheScoreAndThePolicy(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"wallet", "score", "--help"}, []string{"S = base + avail_weight * A + repaid_weight * R + penalty * max(0, grace - D)", "decrypted on this machine", "Examples:"}},
		{[]string{"wallet", "loan", "apply", "--help"}, []string{"nothing is sent", "--share-score", "--min", "SHA-256", "Examples:"}},
		{[]string{"wallet", "loan", "repay", "--help"}, []string{"on time", "the lender sees what it receives", "Examples:"}},
		{[]string{"wallet", "consent", "--help"}, []string{"grant", "revoke", "list"}},
		{[]string{"bot", "--help"}, []string{`"min_score"`, `"max_open_loans"`, "SHA-256", "one log line", "Several bots", "Examples:"}},
		{[]string{"wallet", "--help"}, []string{"score", "loan", "loans", "consent"}},
	} {
		code, out, _ := zk(t, c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v lacks %q", c.args, w)
			}
		}
	}
}

func TestSplitScore(t *testing.T) {
	// 1 x 1000.00 + 2 x 45.00 + 50000 x (4 - 1)
	p := scoreParamsForTest()
	got := splitScore(p, 100000+9000+150000, 100000, 1)
	if !got.ok || got.repaid != 4500 || got.repaidPart != 9000 || got.avail != 100000 || got.public != 150000 {
		t.Fatalf("%+v", got)
	}
	if got := splitScore(p, 100, 100000, 0); got.ok {
		t.Fatalf("a score below its public terms derived %+v", got)
	}
	if got := splitScore(p, 300001, 100000, 0); got.ok {
		t.Fatalf("an odd repaid part derived %+v", got)
	}
}

func scoreParamsForTest() api.ScoreParams {
	d := ledger.DefaultScoreParams
	return api.ScoreParams{Base: d.Base, Avail: d.Avail, Repaid: d.Repaid, Penalty: d.Penalty, Grace: d.Grace}
}
