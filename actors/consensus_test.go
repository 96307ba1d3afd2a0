package actors

import (
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkbank/zkbank/consensus"
)

// haltingApp decides anything and fails to finalize: a full disk, say.
type haltingApp struct{}

func (haltingApp) BuildProposal(h uint64, _ *consensus.CommitCertificate) ([]byte, error) {
	return []byte("value"), nil
}
func (haltingApp) ValidateProposal(uint64, []byte) error { return nil }
func (haltingApp) ExtendVote(uint64, consensus.Round, []byte) ([]byte, error) {
	return []byte("ext"), nil
}
func (haltingApp) VerifyExtension(uint64, int, []byte, []byte) error { return nil }
func (haltingApp) Finalize(uint64, []byte, *consensus.CommitCertificate) error {
	return errors.New("disk full")
}

// A machine whose Finalize fails is halted for good: the actor tells the
// node once, through the Halted hook (the node then restarts from its
// durable state), instead of ignoring every later input in silence.
func TestConsensusActor_HaltIsReportedOnce(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	vals, err := consensus.NewValidatorSet([]consensus.Validator{{PubKey: priv.Public().(ed25519.PublicKey), Power: 1}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := consensus.NewMachine(consensus.Config{ChainID: "halt", Validators: vals}, haltingApp{}, consensus.NewEd25519Signer(priv), nil)
	if err != nil {
		t.Fatal(err)
	}
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown()
	var halts atomic.Int32
	got := make(chan error, 4)
	c := NewConsensus(sys, m, ConsensusHooks{
		Persist: func([]consensus.WALRecord) error { return nil },
		Send:    func(int, []byte) {},
		Halted: func(err error) {
			halts.Add(1)
			got <- err
		},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer c.Stop()
	c.Start(1, nil) // a committee of one decides height 1 at once
	select {
	case err := <-got:
		if !errors.Is(err, consensus.ErrHalted) {
			t.Fatalf("halted with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a failing Finalize was never reported")
	}
	c.WorkAvailable()
	if ri, err := c.Round(); err != nil || !ri.Halted {
		t.Fatalf("round info %+v, %v", ri, err)
	}
	if n := halts.Load(); n != 1 {
		t.Fatalf("reported %d times", n)
	}
}
