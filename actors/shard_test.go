package actors

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// A shard actor that panics mid-evaluation is restarted by its supervisor
// and the batch is evaluated again from the same immutable book: the result
// is identical to an undisturbed evaluation, so nothing half-applied survives.
func TestShardActorPanicIsRestartedAndRetried(t *testing.T) {
	f := newShardFixture(t)
	eng, book, batches := f.eng, f.book, f.batches
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown()
	var crashes atomic.Int32
	crashHook = func(uint32) bool { return crashes.Add(1) == 1 }
	defer func() { crashHook = nil }()

	// A timeout of minutes, as in a node: the crash must be answered at once,
	// not discovered when the request times out.
	pool := NewShards(sys, eng, 5*time.Minute)
	got, err := pool.Evaluate(book, batches, []byte("block"))
	if err != nil {
		t.Fatalf("evaluation after a crash: %v", err)
	}
	if crashes.Load() < 2 {
		t.Fatalf("the crash was not injected (calls: %d)", crashes.Load())
	}
	want, err := book.EvaluateBatch(eng.Clone(), batches[0], []byte("block"), 0)
	if err != nil {
		t.Fatal(err)
	}
	dg, _ := got[0].Checks.Digest()
	dw, _ := want.Checks.Digest()
	if dg != dw {
		t.Fatal("evaluation after restart differs from an undisturbed one")
	}
}

// A shard actor that panics on every attempt fails the evaluation with
// ErrShardCrashed after one retry, instead of leaving the caller (consensus)
// waiting for the request timeout: with a timeout of an hour this test would
// otherwise hit the test deadline.
func TestShardActorThatKeepsCrashingFailsTheRequestAtOnce(t *testing.T) {
	f := newShardFixture(t)
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown()
	var crashes atomic.Int32
	crashHook = func(uint32) bool { crashes.Add(1); return true }
	defer func() { crashHook = nil }()
	pool := NewShards(sys, f.eng, time.Hour)
	_, err := pool.Evaluate(f.book, f.batches, []byte("block"))
	if !errors.Is(err, ErrShardCrashed) || !errors.Is(err, ErrEvaluation) {
		t.Fatalf("evaluation with a crashing shard: %v, want ErrEvaluation wrapping ErrShardCrashed", err)
	}
	if crashes.Load() != 2 {
		t.Fatalf("%d attempts, want 2 (one retry)", crashes.Load())
	}
}

type shardFixture struct {
	eng     *ledger.Engine
	book    *ledger.Book
	batches []*ledger.Batch
}

// newShardFixture is a one-validator committee, two accounts and one planned
// batch holding a transfer between them.
func newShardFixture(t *testing.T) *shardFixture {
	t.Helper()
	p := ledger.MustParams(ledger.ZKB128)
	com, _ := ledger.NewCommittee(1, 1)
	party, _ := ledger.NewParty(p, com, 0, []byte("actors-test"))
	r1, deals, err := party.Round1()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := party.Round2([]*ledger.Round1{r1})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ledger.AggregatePublic(p, com, []byte("actors-test"), []*ledger.Round1{r1}, []*ledger.Round2{r2})
	if err != nil {
		t.Fatal(err)
	}
	_ = deals
	eng, err := ledger.NewEngine(p, keys)
	if err != nil {
		t.Fatal(err)
	}
	pubA, keyA, _ := ed25519.GenerateKey(rand.Reader)
	pubB, _, _ := ed25519.GenerateKey(rand.Reader)
	book, err := ledger.NewBook(eng, "actors", []ledger.GenesisAccount{{SignPub: pubA, Balance: 100}, {SignPub: pubB}})
	if err != nil {
		t.Fatal(err)
	}
	// One validator holds the one piece: its batch ciphertext encrypts the
	// transfer's values directly.
	sh, _ := ledger.NewSharing(1, 0)
	vpub, _, _ := ed25519.GenerateKey(rand.Reader)
	seal, err := ledger.SealPublicKey(vpub)
	if err != nil {
		t.Fatal(err)
	}
	dealer, err := ledger.NewDealer(p, sh, []*ecdh.PublicKey{seal}, "actors")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := dealer.Build(ledger.TransferSpec{From: ledger.AccountIDOf(pubA), Key: keyA, To: ledger.AccountIDOf(pubB), Amount: 5, Balance: 100, Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := p.EncryptPieceBatch(keys.PK, []ledger.LanePiece{{Lane: 0, Piece: &ledger.Piece{Values: ledger.TransferValues(5, 95)}}}, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	credit, err := p.EncryptCreditBatch(keys.PK, []ledger.LaneCredit{{Lane: 1, Index: 0, Piece: &ledger.Piece{Values: ledger.TransferValues(5, 95)}}}, [32]byte{2})
	if err != nil {
		t.Fatal(err)
	}
	batches, early := book.Plan([]ledger.Pending{{Env: &sub.Envelopes[0], CT: ct, Credits: []ledger.CreditRef{{CT: credit}}}})
	if len(early) != 0 || len(batches) != 1 {
		t.Fatalf("plan: %d batches, early %v", len(batches), early)
	}

	return &shardFixture{eng: eng, book: book, batches: batches}
}
