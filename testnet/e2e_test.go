package testnet

// End-to-end: the real zkbank binary, a real 4-validator testnet, driven as a
// new user would (part of the default suite; skipped with -short).
//
//	go test -run E2E -v ./testnet/
//
// ZKBANK_BIN may name a prebuilt binary; otherwise the test builds one.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func buildBinary(t *testing.T) string {
	if b := os.Getenv("ZKBANK_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "zkbank")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/zkbank/zkbank/cmd/zkbank")
	cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// cli runs one zkbank command to completion.
func cli(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=")
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	t.Logf("$ zkbank %s  (exit %d)\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

type liveTestnet struct {
	cmd      *exec.Cmd
	out, err *syncBuf
	done     chan error
}

func startTestnet(t *testing.T, bin string, args ...string) *liveTestnet {
	t.Helper()
	tn := &liveTestnet{out: &syncBuf{}, err: &syncBuf{}, done: make(chan error, 1)}
	tn.cmd = exec.Command(bin, append([]string{"testnet"}, args...)...)
	tn.cmd.Stdout, tn.cmd.Stderr = tn.out, tn.err
	tn.cmd.Env = append(os.Environ(), "ZKBANK_FAKE_NODE=")
	if err := tn.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { tn.done <- tn.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-tn.done:
		default:
			tn.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-tn.done:
			case <-time.After(30 * time.Second):
				tn.cmd.Process.Kill()
			}
		}
	})
	deadline := time.After(6 * time.Minute)
	for !strings.Contains(tn.out.String(), "resumes this chain") {
		select {
		case err := <-tn.done:
			t.Fatalf("testnet exited early: %v\nstdout:\n%s\nstderr:\n%s", err, tn.out.String(), tn.err.String())
		case <-deadline:
			t.Fatalf("testnet not up after 6 min\nstderr:\n%s", tn.err.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("testnet up:\n%s", tn.out.String())
	return tn
}

// stop sends Ctrl-C and expects a clean exit.
func (tn *liveTestnet) stop(t *testing.T) {
	t.Helper()
	tn.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-tn.done:
		if err != nil {
			t.Fatalf("testnet exit: %v\nstderr tail:\n%s", err, tail(tn.err.String(), 5))
		}
	case <-time.After(40 * time.Second):
		t.Fatal("testnet did not stop within 40 s of Ctrl-C")
	}
	if !strings.Contains(tn.err.String(), "stopped.") {
		t.Fatalf("no clean stop message:\n%s", tail(tn.err.String(), 5))
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func mustContain(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func oneLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "zkbank: ") {
		t.Fatalf("stderr is not one error line: %q", stderr)
	}
	mustContain(t, "error line", lines[0], want...)
}

func TestE2E_TestnetSendOverdraftRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end testnet in -short mode")
	}
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	base := freePorts(t, 8)
	args := []string{"--dir", dir, "--validators", "4", "--accounts", "2", "--demo=false",
		"--p2p-port", fmt.Sprint(base), "--api-port", fmt.Sprint(base + 4)}
	w := func(name string) string { return filepath.Join(dir, "wallets", name+".json") }
	node0 := fmt.Sprintf("http://127.0.0.1:%d", base+4)

	tn := startTestnet(t, bin, args...)
	mustContain(t, "summary", tn.out.String(), "4 validators, 2-of-4 threshold key", "alice", "1000.00", "available 500.00 of 500.00 credit")

	// A transfer between two demo wallets, then both balances decrypted.
	code, out, _ := cli(t, bin, "wallet", "send", "--wallet", w("alice"), "--to", w("bob"), "--amount", "12.34")
	if code != 0 {
		t.Fatal("send failed")
	}
	mustContain(t, "send", out, "committed in block", "alice: balance 987.66 available")
	// The payment waits in bob's pending balance until he applies it.
	_, out, _ = cli(t, bin, "wallet", "balance", "--wallet", w("bob"))
	mustContain(t, "bob", out, "bob: balance 1000.00 available; 12.34 pending")
	code, out, _ = cli(t, bin, "wallet", "apply", "--wallet", w("bob"))
	if code != 0 {
		t.Fatal("apply failed")
	}
	mustContain(t, "apply", out, "applying 12.34 pending", "bob: balance 1012.34 available")

	// An honest wallet refuses to build an overdraft...
	code, _, stderr := cli(t, bin, "wallet", "send", "--wallet", w("alice"), "--to", w("bob"), "--amount", "5000")
	if code == 0 {
		t.Fatal("overdraft accepted by the wallet")
	}
	oneLine(t, stderr, "insufficient funds: available 987.66, amount 5000.00; nothing was sent")
	// ...and forged overdrafts reach the validators, which reject them all.
	code, out, _ = cli(t, bin, "load", "--genesis", filepath.Join(dir, "genesis.json"), "--wallets", filepath.Join(dir, "wallets"),
		"-n", "3", "-p", "2", "--max", "--invalid", "1", "--seed", "1")
	if code != 0 {
		t.Fatal("load reported a failed check")
	}
	mustContain(t, "load", out, "invalid     sent 3, rejected 3, accepted 0", "conserved")

	// Card: charge, then the holder decrypts available credit.
	code, out, _ = cli(t, bin, "wallet", "charge", "--wallet", w("card"), "--to", w("bob"), "--amount", "20")
	if code != 0 {
		t.Fatal("charge failed")
	}
	_, out, _ = cli(t, bin, "wallet", "available", "--wallet", w("card"))
	mustContain(t, "available", out, "available credit 480.00", "limit 500.00, spent 20.00")
	code, _, stderr = cli(t, bin, "wallet", "charge", "--wallet", w("card"), "--to", w("bob"), "--amount", "481")
	if code == 0 {
		t.Fatal("over-limit charge went through")
	}
	oneLine(t, stderr, "declined: insufficient credit")

	tn.stop(t)

	// Node down: one clear line.
	code, _, stderr = cli(t, bin, "wallet", "balance", "--wallet", w("alice"), "--node", node0, "--timeout", "10s")
	if code == 0 {
		t.Fatal("balance with the chain down succeeded")
	}
	oneLine(t, stderr, "unreachable")

	// Restart: the same chain resumes from disk with the same balances.
	tn = startTestnet(t, bin, args...)
	mustContain(t, "resumed stderr", tn.err.String(), "resuming chain")
	_, out, _ = cli(t, bin, "wallet", "balance", "--wallet", w("alice"))
	mustContain(t, "alice after restart", out, "alice: balance 987.66")
	_, out, _ = cli(t, bin, "wallet", "balance", "--wallet", w("bob"))
	mustContain(t, "bob after restart", out, "bob: balance 1012.34 available; 20.00 pending")
	_, out, _ = cli(t, bin, "wallet", "available", "--wallet", w("card"))
	mustContain(t, "card after restart", out, "available credit 480.00")

	// CLI error paths against a live chain.
	corrupt := filepath.Join(t.TempDir(), "corrupt.json")
	os.WriteFile(corrupt, []byte(`{"version": 1, "name": "x"`), 0o600)
	_, _, stderr = cli(t, bin, "wallet", "balance", "--wallet", corrupt, "--node", node0)
	oneLine(t, stderr, "wallet "+corrupt, "corrupt wallet file")
	_, _, stderr = cli(t, bin, "wallet", "send", "--wallet", w("alice"), "--to", strings.Repeat("ab", 32), "--amount", "1")
	oneLine(t, stderr, "unknown recipient account")
	fresh := filepath.Join(t.TempDir(), "fresh.json")
	cli(t, bin, "wallet", "create", "--name", "fresh", "--out", fresh)
	_, _, stderr = cli(t, bin, "wallet", "balance", "--wallet", fresh, "--node", node0)
	oneLine(t, stderr, "unknown account")
	_, _, stderr = cli(t, bin, "wallet", "send", "--wallet", w("alice"), "--to", w("bob"), "--amount", "1.234")
	oneLine(t, stderr, "at most 2 decimals")

	// Opening a new account, then funding it.
	code, out, _ = cli(t, bin, "wallet", "open", "--wallet", fresh, "--node", node0)
	if code != 0 {
		t.Fatal("open failed")
	}
	mustContain(t, "open", out, "opened deposit account")
	code, _, _ = cli(t, bin, "wallet", "send", "--wallet", w("alice"), "--to", fresh, "--amount", "1", "--node", node0)
	if code != 0 {
		t.Fatal("send to a newly opened account failed")
	}
	_, out, _ = cli(t, bin, "wallet", "balance", "--wallet", fresh, "--node", node0)
	mustContain(t, "fresh", out, "fresh: balance 0.00 available; 1.00 pending")

	// One transfer paying two wallets: one debit of the total, one credit
	// each; an overdrawn total is refused before anything is sent.
	code, out, _ = cli(t, bin, "wallet", "pay-many", "--wallet", w("alice"), "--pay", w("bob")+"=1.50", "--pay", fresh+"=2", "--node", node0)
	if code != 0 {
		t.Fatal("pay-many failed")
	}
	mustContain(t, "pay-many", out, "sending 3.50 to 2 payees in one transfer", "committed in block", "alice: balance 983.16 available")
	_, out, _ = cli(t, bin, "wallet", "balance", "--wallet", fresh, "--node", node0)
	mustContain(t, "fresh after pay-many", out, "fresh: balance 0.00 available; 3.00 pending")
	_, _, stderr = cli(t, bin, "wallet", "pay-many", "--wallet", w("alice"), "--pay", w("bob")+"=5000", "--pay", fresh+"=1", "--node", node0)
	oneLine(t, stderr, "insufficient funds: available 983.16, total 5001.00; nothing was sent")

	// kill -9 of one validator under load, then restart it: the load completes
	// with supply conserved and every forged overdraft rejected, and the
	// killed validator catches up with the others.
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancelLoad()
	var loadOut bytes.Buffer
	load := exec.CommandContext(loadCtx, bin, "load", "--genesis", filepath.Join(dir, "genesis.json"), "--wallets", filepath.Join(dir, "wallets"),
		"-n", "24", "-p", "3", "--rate", "3", "--invalid", "0.25", "--seed", "7")
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	l := Layout{Dir: dir}
	pidb, err := os.ReadFile(l.PIDFile(3))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(pidb), &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	t.Logf("killed node-3 (pid %d) with SIGKILL under load", pid)
	time.Sleep(4 * time.Second)
	logf, _ := os.OpenFile(l.Log(3), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	restarted := exec.Command(bin, "node", "--home", l.Home(3))
	restarted.Stdout, restarted.Stderr = logf, logf
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		restarted.Process.Signal(syscall.SIGTERM)
		restarted.Wait()
		logf.Close()
	}()
	if err := load.Wait(); err != nil {
		t.Fatalf("load with a validator killed: %v\n%s", err, loadOut.String())
	}
	t.Logf("$ zkbank load (during kill -9)\n%s", loadOut.String())
	mustContain(t, "load during kill -9", loadOut.String(), "accepted 0", "conserved")
	node3 := fmt.Sprintf("http://127.0.0.1:%d", base+4+3)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		h0, h3 := statusHeight(t, node0), statusHeight(t, node3)
		if h3 > 0 && h3+2 >= h0 {
			t.Logf("node-3 caught up: height %d vs %d", h3, h0)
			break
		}
		if time.Now().After(deadline) {
			logb, _ := os.ReadFile(l.Log(3))
			t.Fatalf("killed validator did not catch up: %d vs %d\nnode-3 log tail:\n%s", h3, h0, tail(string(logb), 60))
		}
		time.Sleep(time.Second)
	}
	_, out, _ = cli(t, bin, "wallet", "balance", "--wallet", w("alice"), "--node", node3)
	mustContain(t, "balance through the restarted validator", out, "alice: balance")

	tn.stop(t)
}

// statusHeight reads a node's finalized height (0 if unreachable).
func statusHeight(t *testing.T, api string) uint64 {
	resp, err := http.Get(api + "/v1/status")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		Height uint64 `json:"height"`
		Ready  bool   `json:"ready"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil || !st.Ready {
		return 0
	}
	return st.Height
}
