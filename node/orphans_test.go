package node

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

func orphanEnv(from byte, prev byte, nonce uint64) *ledger.Envelope {
	return &ledger.Envelope{Chain: "c", From: ledger.AccountID{from}, To: ledger.AccountID{9}, Nonce: nonce, Prev: [32]byte{prev}}
}

// Orphans wait for their predecessor, are released once (by the
// predecessor's admission or its commit), expire, and stay within their
// bounds per account and in all.
func TestOrphans_WaitForTheirPredecessorWithinBounds(t *testing.T) {
	o := newOrphans()
	now := time.Unix(1000, 0)
	o.now = func() time.Time { return now }
	a := orphanEnv(1, 7, 2)
	if !o.hold(a, []byte("a")) || o.hold(a, []byte("a")) {
		t.Fatal("an orphan was not held once")
	}
	if got := o.children([32]byte{8}); len(got) != 0 {
		t.Fatalf("released %d orphans for another predecessor", len(got))
	}
	if got := o.children([32]byte{7}); len(got) != 1 || string(got[0]) != "a" || o.len() != 0 {
		t.Fatalf("children: %q, %d left", got, o.len())
	}
	// Released when a commit makes the predecessor the account's last
	// operation; others keep waiting.
	o.hold(orphanEnv(1, 7, 2), []byte("b"))
	o.hold(orphanEnv(2, 5, 3), []byte("c"))
	got := o.settled(func(id ledger.AccountID) ([32]byte, bool) { return [32]byte{7}, id == ledger.AccountID{1} })
	if len(got) != 1 || string(got[0]) != "b" || o.len() != 1 {
		t.Fatalf("settled: %q, %d left", got, o.len())
	}
	now = now.Add(orphanTTL + time.Second)
	o.expire()
	if o.len() != 0 {
		t.Fatalf("%d orphans outlived their TTL", o.len())
	}
	for i := 0; i < maxOrphansPerAccount+3; i++ {
		o.hold(orphanEnv(3, byte(i), uint64(i)), []byte{byte(i)})
	}
	if o.len() != maxOrphansPerAccount {
		t.Fatalf("one account holds %d orphans, bound %d", o.len(), maxOrphansPerAccount)
	}
	for i := 0; o.len() < maxOrphans; i++ {
		if !o.hold(&ledger.Envelope{From: ledger.AccountID{4, byte(i), byte(i >> 8)}, Prev: [32]byte{1}}, nil) {
			t.Fatalf("refused at %d of %d", o.len(), maxOrphans)
		}
	}
	if o.hold(orphanEnv(5, 1, 1), nil) {
		t.Fatal("held beyond maxOrphans")
	}
}

// A wallet's second operation, relayed to the other validators before its
// predecessor (concurrent relays may deliver them in any order), is held
// until the predecessor arrives and then commits. Refused, it would reach
// only the validator the wallet sent it to, never gather N-f acks, and
// never get a verdict.
func TestCluster_OperationRelayedBeforeItsPredecessorCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	hold := &faults{}
	hold.holdRelays.Store(true)
	c := newCluster(t, 4, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, func(i int) *faults {
		if i == 0 {
			return hold
		}
		return nil
	})
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	u := c.users["alice"]
	a := c.account("alice")
	_, h := c.balance("alice", 0, 1, 2, 3)
	first, err := b.Build(ledger.TransferSpec{From: u.id, Key: u.key, To: c.users["bob"].id, Amount: 10, Balance: 100, Height: h, Nonce: a.Nonce + 1, Prev: c.lastOp(a)})
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Build(ledger.TransferSpec{From: u.id, Key: u.key, To: c.users["carol"].id, Amount: 20, Balance: 90, Height: h, Nonce: a.Nonce + 2, Prev: first.Envelopes[0].ID()})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sub := range []*ledger.Submission{first, second} {
		raw, _ := sub.MarshalBinary()
		resp, err := http.Post(c.apis[0]+api.PathTransfers, api.ContentBinary, bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		var sr api.SubmitResponse
		_ = json.NewDecoder(resp.Body).Decode(&sr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || len(sr.IDs) != 1 {
			t.Fatalf("submit: %d", resp.StatusCode)
		}
		ids = append(ids, sr.IDs[0])
	}
	hold.releaseReversed()
	for _, id := range ids {
		var st api.TransferStatus
		c.waitFor("transfer decided", 2*time.Minute, func() bool {
			_ = c.getJSON(1, api.PathTransfer+id, &st)
			return st.Status == api.StatusCommitted || st.Status == api.StatusRejected
		})
		if st.Status != api.StatusCommitted {
			t.Fatalf("transfer %s: %+v", id[:8], st)
		}
	}
	held := 0.0
	for i := 1; i < 4; i++ {
		held += c.metric(i, `zkbank_submissions_total{result="orphan"}`)
	}
	if held < 1 {
		t.Fatalf("validators 1-3 held %v orphans, want at least 1", held)
	}
	// Both debits are in alice's balance once the height deciding the
	// second is the one every validator answers at.
	var avail uint64
	c.waitFor("both debits in alice's balance", time.Minute, func() bool {
		avail, _ = c.balance("alice", 0, 1, 2, 3)
		return avail == 70
	})
	if avail != 70 {
		t.Fatalf("alice holds %d available, want 70", avail)
	}
}
