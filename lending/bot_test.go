package lending

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fakeNode serves a chain of height 3 whose block 2 holds two checks: one
// to the pool under another policy, one to another lender. While down it
// answers 503, as a node that is not ready.
func fakeNode(t *testing.T, pool string, up *atomic.Bool) *genesis.Genesis {
	other := strings.Repeat("ee", 32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.ContentJSON)
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(api.Error{Error: "node is not ready yet", Code: "not_ready"})
			return
		}
		switch {
		case r.URL.Path == api.PathStatus:
			json.NewEncoder(w).Encode(api.Status{Chain: "fake", Ready: true, Height: 3, AppliedHeight: 3})
		case strings.HasPrefix(r.URL.Path, api.PathBlock):
			b := api.Block{Height: 1}
			if r.URL.Path == api.PathBlock+"2" {
				b.Height = 2
				b.Transfers = []api.TransferStatus{
					{ID: strings.Repeat("a1", 32), Status: api.StatusCommitted, Height: 2, From: strings.Repeat("b0", 32), To: pool,
						Kind: "check", Min: 250000, Policy: strings.Repeat("00", 32)},
					{ID: strings.Repeat("a2", 32), Status: api.StatusCommitted, Height: 2, From: strings.Repeat("b1", 32), To: other,
						Kind: "check", Min: 250000, Policy: strings.Repeat("00", 32)},
				}
			}
			json.NewEncoder(w).Encode(b)
		default:
			w.WriteHeader(404)
			json.NewEncoder(w).Encode(api.Error{Error: "not found", Code: "not_found"})
		}
	}))
	t.Cleanup(srv.Close)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return &genesis.Genesis{ChainID: "fake", ParamSet: ledger.ZKB128.Name, Threshold: 1, Created: time.Now().UTC(),
		Validators: []genesis.Validator{{Index: 0, Name: "node-0", PeerID: "p", ConsensusPub: hex.EncodeToString(pub), API: srv.URL, Power: 1}}}
}

// A node that is down is logged once and retried; once it answers, the bot
// scans every block, decides the application addressed to its pool (one
// log line with its reason), ignores the one to another lender, and stops
// cleanly, its progress saved.
func TestBot_RetriesADownNodeThenDecidesWithAReason(t *testing.T) {
	dir := t.TempDir()
	pool, err := wallet.New("pool", wallet.KindDeposit, ledger.MustParams(ledger.ZKB128))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Create(filepath.Join(dir, "pool.json")); err != nil {
		t.Fatal(err)
	}
	pol, err := ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	g := fakeNode(t, pool.Account, &up)
	m, err := client.NewMulti(g, client.WithParams(pool.Params()), client.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuf{}
	statePath := filepath.Join(dir, "state.json")
	bot, err := NewBot(BotConfig{Multi: m, Pool: pool, Policy: pol, PolicyHash: Hash([]byte(testPolicy)), StatePath: statePath,
		Poll: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bot.Run(ctx) }()
	waitLog := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(logs.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q:\n%s", want, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog(`msg="chain not reachable; retrying"`)
	time.Sleep(300 * time.Millisecond) // a few more failed steps
	up.Store(true)
	waitLog(`msg="chain reachable again"`)
	waitLog(`msg=decision`)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "chain not reachable"); n != 1 {
		t.Fatalf("the outage logged %d times:\n%s", n, out)
	}
	if strings.Count(out, "msg=decision") != 1 || !strings.Contains(out, "applicant="+strings.Repeat("b0", 32)) ||
		!strings.Contains(out, "decision=refuse") || !strings.Contains(out, `reason="the check names policy 0000000000000000, not this lender's policy`) {
		t.Fatalf("decisions:\n%s", out)
	}
	if !strings.Contains(out, `msg="lender stopped"`) {
		t.Fatalf("no clean stop:\n%s", out)
	}
	st, err := LoadState(statePath, "fake", pool.Account)
	if err != nil || st.Scanned != 3 || st.Applications[strings.Repeat("a1", 32)] == nil || len(st.Applications) != 1 {
		t.Fatalf("state: %+v %v", st, err)
	}
}
