package actors

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/ledger"
)

// One account cannot fill the mempool: past its cap of waiting uploads it is
// refused (ErrSenderBusy) while other accounts still get in, and its slots
// free up when a block commits its uploads. A full pool is ErrPoolFull.
func TestMempoolCapsWaitingUploadsPerAccount(t *testing.T) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown()
	m := NewMempool(sys, 12)
	upload := func(i byte, from ledger.AccountID) *chain.Upload {
		u := &chain.Upload{Hash: [32]byte{i}, Envs: []ledger.Envelope{{From: from, Nonce: uint64(i), CTHash: [32]byte{i}}}}
		return u
	}
	spammer, honest := ledger.AccountID{1}, ledger.AccountID{2}
	var first *chain.Upload
	for i := byte(0); i < 4; i++ {
		u := upload(i, spammer)
		if first == nil {
			first = u
		}
		if ok, err := m.Add(u, 4); !ok || err != nil {
			t.Fatalf("upload %d: %v %v", i, ok, err)
		}
	}
	if _, err := m.Add(upload(4, spammer), 4); !errors.Is(err, ErrSenderBusy) {
		t.Fatalf("fifth upload of one account: %v, want ErrSenderBusy", err)
	}
	if ok, err := m.Add(upload(5, honest), 4); !ok || err != nil {
		t.Fatalf("another account's upload: %v %v", ok, err)
	}
	m.Committed(&chain.Block{Subs: []chain.SubRef{{CTHash: first.Hash, Envelopes: first.Envs}}}, nil)
	if ok, err := m.Add(upload(6, spammer), 4); !ok || err != nil {
		t.Fatalf("after a commit freed a slot: %v %v", ok, err)
	}
	for i := byte(7); i < 14; i++ { // 5 waiting + 7 = 12, the pool's size
		if _, err := m.Add(upload(i, ledger.AccountID{i}), 4); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	if _, err := m.Add(upload(14, ledger.AccountID{14}), 4); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("upload into a full pool: %v, want ErrPoolFull", err)
	}
}

// Uploads that can never be ordered leave the pool at the next block instead
// of squatting it until they expire: one built on an operation that is not
// its account's last accepted one, not in a recent block and not waiting in
// the pool (a made-up Prev, or one built on a rejected operation). Chained
// operations waiting on each other, and ones built on an operation of a
// block whose results are not applied yet, stay. Admission lets an
// operation through only if Knows its Prev.
func TestAttack_UnorderableOperationsLeaveThePool(t *testing.T) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown()
	m := NewMempool(sys, 64)
	alice, bob, carol := ledger.AccountID{1}, ledger.AccountID{2}, ledger.AccountID{3}
	lastAlice, inBlock, bogus := [32]byte{0xa}, [32]byte{0xb}, [32]byte{0xc}
	op := func(from ledger.AccountID, nonce uint64, prev [32]byte) *chain.Upload {
		return &chain.Upload{Hash: [32]byte{byte(nonce), from[0]}, Envs: []ledger.Envelope{{From: from, Nonce: nonce, Prev: prev, CTHash: [32]byte{byte(nonce), from[0]}}}}
	}
	first := op(alice, 1, lastAlice)
	second := op(alice, 2, first.ID()) // waits for first
	squat := op(alice, 3, bogus)
	onBlock := op(bob, 1, inBlock)
	replay := op(carol, 3, [32]byte{}) // carol's nonce 5 is consumed
	for _, u := range []*chain.Upload{first, second, squat, onBlock, replay} {
		if ok, err := m.Add(u, 8); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	lastOp := func(id ledger.AccountID) ([32]byte, uint64, bool) {
		switch id {
		case alice:
			return lastAlice, 0, true
		case carol:
			return [32]byte{}, 5, true
		}
		return [32]byte{}, 0, true
	}
	commit := func(ids ...[32]byte) {
		sys.Root.Send(m.pid, &committed{IDs: ids, LastOp: lastOp})
	}
	commit(inBlock)
	for _, c := range []struct {
		u    *chain.Upload
		stay bool
	}{{first, true}, {second, true}, {squat, false}, {onBlock, true}, {replay, false}} {
		got, err := m.Get(c.u.ID())
		if err != nil {
			t.Fatal(err)
		}
		if (got != nil) != c.stay {
			t.Fatalf("upload of nonce %d from %x: in pool %v, want %v", c.u.Envs[0].Nonce, c.u.Envs[0].From[:1], got != nil, c.stay)
		}
	}
	for id, want := range map[[32]byte]bool{first.ID(): true, inBlock: true, bogus: false} {
		if got, err := m.Knows(id); err != nil || got != want {
			t.Fatalf("Knows(%x) = %v %v, want %v", id[:1], got, err, want)
		}
	}
	// Three blocks later bob's Prev is neither recent nor his last accepted
	// operation (its block rejected it): his upload leaves too.
	commit()
	commit()
	commit()
	if got, _ := m.Get(onBlock.ID()); got != nil {
		t.Fatal("an upload built on a rejected operation stayed in the pool")
	}
	if got, _ := m.Get(second.ID()); got == nil {
		t.Fatal("a chained upload left the pool")
	}
}

// Consents that can no longer be recorded (expired by the time a block
// could record them, replayed, over their owner's limits) leave the pool
// at the next commit: 64 of them at the head of the queue would otherwise
// be all a proposer is offered, forever, so no later consent or
// revocation would ever be recorded and the pool would always "have work".
// One owner cannot queue more than ledger.MaxConsents.
func TestAttack_UnrecordableConsentsDoNotBlockLaterOnes(t *testing.T) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown()
	m := NewMempool(sys, 64)
	var doomed []ledger.Consent
	for i := 0; i < chain.MaxBlockConsents; i++ {
		c := ledger.Consent{Owner: ledger.AccountID{byte(i), 1}, Lender: ledger.AccountID{9}, Scope: ledger.ScopeScore, Expiry: 11, Nonce: 1}
		doomed = append(doomed, c)
		if err := m.AddConsent(c); err != nil {
			t.Fatal(err)
		}
	}
	honest := ledger.Consent{Owner: ledger.AccountID{7, 7}, Lender: ledger.AccountID{9}, Scope: ledger.ScopeRevoke, Nonce: 3}
	if err := m.AddConsent(honest); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Consents(chain.MaxBlockConsents); len(got) != chain.MaxBlockConsents || got[0].ID() != doomed[0].ID() {
		t.Fatalf("the proposer is offered %d consents", len(got))
	}
	// The finalized book refuses every doomed one (their expiry passed).
	sys.Root.Send(m.pid, &committed{ConsentOK: func(c *ledger.Consent) bool { return c.Owner == honest.Owner }})
	got, err := m.Consents(chain.MaxBlockConsents)
	if err != nil || len(got) != 1 || got[0].ID() != honest.ID() {
		t.Fatalf("after a commit the proposer is offered %d consents (%v), want only the honest revocation", len(got), err)
	}
	// Recorded: the pool is empty and has no work.
	sys.Root.Send(m.pid, &committed{Consents: [][32]byte{honest.ID()}})
	if w, err := m.HasWork(); err != nil || w {
		t.Fatalf("an empty pool has work: %v %v", w, err)
	}
	// One owner's queue is bounded.
	spam := ledger.AccountID{5}
	for i := 1; i <= ledger.MaxConsents; i++ {
		if err := m.AddConsent(ledger.Consent{Owner: spam, Lender: ledger.AccountID{9}, Scope: ledger.ScopeScore, Expiry: 100, Nonce: uint64(i)}); err != nil {
			t.Fatalf("consent %d: %v", i, err)
		}
	}
	if err := m.AddConsent(ledger.Consent{Owner: spam, Lender: ledger.AccountID{9}, Scope: ledger.ScopeScore, Expiry: 100, Nonce: 99}); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("one owner's consent beyond %d: %v", ledger.MaxConsents, err)
	}
	if err := m.AddConsent(ledger.Consent{Owner: ledger.AccountID{6}, Lender: ledger.AccountID{9}, Scope: ledger.ScopeScore, Expiry: 100, Nonce: 1}); err != nil {
		t.Fatalf("another owner's consent: %v", err)
	}
}
