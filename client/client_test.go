package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// deadURL is an address nothing listens on.
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestClient_StatusAndGenesis(t *testing.T) {
	c := newCluster(t)
	cl := New(c.nodes[1].srv.URL, WithTimeout(5*time.Second))
	s, err := cl.Status(ctx(t))
	if err != nil || s.ValidatorIndex != 1 || s.Chain != "test-chain" {
		t.Fatalf("status %+v %v", s, err)
	}
	g, err := cl.Genesis(ctx(t))
	if err != nil || g.ChainID != "test-chain" || len(g.Validators) != testN {
		t.Fatalf("genesis %v %v", g, err)
	}
}

func TestClient_UnreachableNodeNamesTheURL(t *testing.T) {
	u := deadURL(t)
	_, err := New(u).Status(ctx(t))
	var ue *UnreachableError
	if !errors.Is(err, ErrUnreachable) || !errors.As(err, &ue) || ue.URL != u {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), strings.TrimPrefix(u, "http://")) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("message %q", err)
	}
}

func TestClient_TimeoutIsUnreachable(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second)
	}))
	defer slow.Close()
	_, err := New(slow.URL, WithTimeout(100*time.Millisecond)).Status(ctx(t))
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("got %v", err)
	}
}

func TestClient_UnknownAccountIs404(t *testing.T) {
	c := newCluster(t)
	id := newHolder(c.com.p).ID().String()
	_, err := New(c.nodes[0].srv.URL).Account(ctx(t), id)
	if !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), id[:16]) {
		t.Fatalf("message does not name the account: %v", err)
	}
}

func TestClient_ServerErrorCarriesStatusAndCode(t *testing.T) {
	c := newCluster(t)
	c.nodes[0].fail500 = true
	_, err := New(c.nodes[0].srv.URL).Status(ctx(t))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 500 || ae.Code != "internal" || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("got %v", err)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Fatal("a 500 is not unreachable")
	}
}

func TestClient_NonJSONErrorBody(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway from proxy", 502)
	}))
	defer s.Close()
	_, err := New(s.URL).Status(ctx(t))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 502 || !strings.Contains(err.Error(), "bad gateway from proxy") {
		t.Fatalf("got %v", err)
	}
}

func TestMulti_BalanceCombinesThresholdRepliesAndDecryptsLocally(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	c.fund(h, 3, 123_456)
	c.each(func(n *fakeNode) { n.height = 7 })
	m, err := NewMulti(c.gen, WithParams(c.com.p))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Balance(ctx(t), h)
	if err != nil {
		t.Fatal(err)
	}
	if b.Amount != 123_456 || b.Height != 7 {
		t.Fatalf("balance %+v", b)
	}
}

func TestMulti_BalanceToleratesOneNodeDownButNotTwo(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	c.fund(h, 0, 500)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	c.nodes[2].srv.Close()
	if b, err := m.Balance(ctx(t), h); err != nil || b.Amount != 500 {
		t.Fatalf("one node down: %+v %v", b, err)
	}
	c.nodes[1].srv.Close()
	_, err := m.Balance(ctx(t), h)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "needs 3 of 4 validators, 2 answered") {
		t.Fatalf("two nodes down: %v", err)
	}
}

// A node one block ahead does not spoil the read: the client asks everyone
// at the highest height a threshold has reached, and the node ahead answers
// from its retained history.
func TestMulti_BalanceAgreesOnTheThresholdHeight(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	c.fund(h, 1, 1000)
	c.each(func(n *fakeNode) { n.height = 5 })
	c.nodes[0].advance(h, 6, 900)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	b, err := m.Balance(ctx(t), h)
	if err != nil || b.Amount != 1000 || b.Height != 5 {
		t.Fatalf("got %+v %v", b, err)
	}
	// Asking for height >= 6 waits until a threshold reaches it.
	go func() {
		time.Sleep(300 * time.Millisecond)
		c.nodes[1].advance(h, 6, 900)
		c.nodes[2].advance(h, 6, 900)
	}()
	b, err = m.BalanceAt(ctx(t), h, 6)
	if err != nil || b.Amount != 900 || b.Height != 6 {
		t.Fatalf("at >= 6: %+v %v", b, err)
	}
}

// A node behind the chosen height answers 409; the threshold of others is
// enough and the laggard is not waited for.
func TestMulti_BalanceIgnoresALaggingNode(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	c.fund(h, 2, 77)
	c.each(func(n *fakeNode) { n.height = 9 })
	c.nodes[2].mu.Lock()
	c.nodes[2].height = 3
	c.nodes[2].mu.Unlock()
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	b, err := m.Balance(ctx(t), h)
	if err != nil || b.Amount != 77 || b.Height != 9 {
		t.Fatalf("got %+v %v", b, err)
	}
}

func TestMulti_BalanceOfUnknownAccount(t *testing.T) {
	c := newCluster(t)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	_, err := m.Balance(ctx(t), newHolder(c.com.p))
	if !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("got %v", err)
	}
}

func TestMulti_BalanceWaitsForNotReadyNodesUntilDeadline(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	c.fund(h, 0, 1)
	c.each(func(n *fakeNode) { n.notReady = true })
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	cx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_, err := m.Balance(cx, h)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not_ready") && !strings.Contains(err.Error(), "ceremony") {
		t.Fatalf("got %v", err)
	}
}

func TestMulti_SubmitFallsBackWhenANodeIsDownAndSpreadsAccounts(t *testing.T) {
	c := newCluster(t)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	b, err := m.Dealer()
	if err != nil {
		t.Fatal(err)
	}
	from, to := newHolder(c.com.p), newHolder(c.com.p)
	sub, err := b.Build(ledger.TransferSpec{From: from.ID(), Lane: 0, Key: from.key, To: to.ID(), Amount: 5, Balance: 10, Height: 1, Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[0].srv.Close()
	for i := 0; i < 3; i++ {
		ids, err := m.Submit(ctx(t), sub)
		want := sub.Envelopes[0].ID()
		if err != nil || len(ids) != 1 || ids[0] != hexID(want) {
			t.Fatalf("submit %d: %v %v", i, ids, err)
		}
	}
	// One account's operations go to one node, in order (each is built on
	// the balance its predecessors leave).
	reached := 0
	for _, n := range c.nodes[1:] {
		if n.submitted == 3 {
			reached++
		}
	}
	if got := c.nodes[1].submitted + c.nodes[2].submitted + c.nodes[3].submitted; got != 3 || reached != 1 {
		t.Fatalf("one account's 3 submissions reached live nodes %d, %d, %d times", c.nodes[1].submitted, c.nodes[2].submitted, c.nodes[3].submitted)
	}
	// Other accounts spread over the nodes.
	for i := 0; i < 16; i++ {
		h := newHolder(c.com.p)
		s, err := b.Build(ledger.TransferSpec{From: h.ID(), Key: h.key, To: to.ID(), Amount: 1, Balance: 1, Nonce: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Submit(ctx(t), s); err != nil {
			t.Fatal(err)
		}
	}
	used := 0
	for _, n := range c.nodes[1:] {
		if n.submitted > 0 {
			used++
		}
	}
	if used < 2 {
		t.Fatalf("16 accounts' submissions all reached one node")
	}
	// The envelope names the chain and verifies under the sender's key.
	for _, n := range c.nodes[1:] {
		for _, sb := range n.subs {
			if e := sb.Envelopes[0]; e.From == from.ID() && (e.Chain != "test-chain" || !e.Verify(from.pub)) {
				t.Fatalf("envelope %+v", e)
			}
		}
	}
	c.nodes[1].srv.Close()
	c.nodes[2].srv.Close()
	c.nodes[3].srv.Close()
	if _, err := m.Submit(ctx(t), sub); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no validator answered") {
		t.Fatalf("all down: %v", err)
	}
}

func TestMulti_SubmitDoesNotRetryARefusal(t *testing.T) {
	c := newCluster(t)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	c.each(func(n *fakeNode) { n.fail500 = true })
	_, err := m.Submit(ctx(t), &ledger.Submission{Envelopes: []ledger.Envelope{{}}, Sealed: []byte{1}})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 500 {
		t.Fatalf("got %v", err)
	}
	total := 0
	c.each(func(n *fakeNode) { total += n.submitted })
	if total != 0 {
		t.Fatal("fake counted a failed submit")
	}
}

func hexID(id [32]byte) string { return ledger.AccountID(id).String() }

func TestMulti_WaitTransferPollsUntilFinal(t *testing.T) {
	c := newCluster(t)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	m.poll = 10 * time.Millisecond
	pending := api.TransferStatus{ID: "t1", Status: api.StatusPending}
	c.each(func(n *fakeNode) {
		n.fates["t1"] = []api.TransferStatus{pending, pending, {ID: "t1", Status: api.StatusCommitted, Height: 9}}
		n.fates["t2"] = []api.TransferStatus{{ID: "t2", Status: api.StatusRejected, Code: "balance_mismatch", Reason: "insufficient funds or wrong balance"}}
	})
	c.nodes[0].srv.Close() // polling moves past a dead node
	s, err := m.WaitTransfer(ctx(t), "t1")
	if err != nil || s.Status != api.StatusCommitted || s.Height != 9 {
		t.Fatalf("t1: %+v %v", s, err)
	}
	s, err = m.WaitTransfer(ctx(t), "t2")
	if err != nil || s.Status != api.StatusRejected || s.Code != "balance_mismatch" {
		t.Fatalf("t2: %+v %v", s, err)
	}
	cx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := m.WaitTransfer(cx, "never-seen"); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still pending") {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestMulti_AccountOpenHistoryWithFallback(t *testing.T) {
	c := newCluster(t)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	c.nodes[0].srv.Close()
	h := newHolder(c.com.p)
	if _, err := m.Account(ctx(t), h.ID().String()); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("before open: %v", err)
	}
	if _, err := m.Open(ctx(t), api.OpenRequest{SignPub: hexID(ledger.AccountID(h.pub[:32])), Kind: "deposit"}); err != nil {
		t.Fatal(err)
	}
	c.fund(h, 4, 0)
	a, err := m.Account(ctx(t), h.ID().String())
	if err != nil || a.Lane != 4 {
		t.Fatalf("account %+v %v", a, err)
	}
	hist, err := m.History(ctx(t), h.ID().String())
	if err != nil || len(hist.Transfers) != 1 {
		t.Fatalf("history %+v %v", hist, err)
	}
}

func TestDialFetchesGenesis(t *testing.T) {
	c := newCluster(t)
	m, err := Dial(ctx(t), strings.TrimPrefix(c.nodes[2].srv.URL, "http://"), WithParams(c.com.p))
	if err != nil || m.Chain() != "test-chain" || len(m.Nodes()) != testN || m.Threshold() != testT+(testN-1)/3 {
		t.Fatalf("dial: %v (threshold %d)", err, m.Threshold())
	}
	if _, err := Dial(ctx(t), deadURL(t)); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("dead: %v", err)
	}
}

func TestMulti_WaitAccountUntilAThresholdKnowsIt(t *testing.T) {
	c := newCluster(t)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	h := newHolder(c.com.p)
	c.nodes[0].mu.Lock()
	c.nodes[0].lanes[h.ID()] = 1
	c.nodes[0].mu.Unlock()
	if err := m.WaitAccount(ctx(t), h.ID().String(), 1); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		c.nodes[2].mu.Lock()
		c.nodes[2].lanes[h.ID()] = 1
		c.nodes[2].mu.Unlock()
	}()
	if err := m.WaitAccount(ctx(t), h.ID().String(), 2); err != nil {
		t.Fatal(err)
	}
	cx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := m.WaitAccount(cx, h.ID().String(), 3); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "known to 2 of 4") {
		t.Fatalf("got %v", err)
	}
}
