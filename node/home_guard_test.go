package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/p2p"
)

// A validator's home whose consensus key was lost or replaced would start
// as a full node under the validator's own peer id: the chain would lose a
// validator without a word. Run refuses: a home with a key share, or with
// a genesis validator's libp2p identity, is no full node's.
func TestRun_ValidatorHomeWithoutItsConsensusKeyRefusesToStart(t *testing.T) {
	valKey, err := p2p.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	valID, _ := peer.IDFromPrivateKey(valKey)
	gen := &genesis.Genesis{Validators: []genesis.Validator{{Index: 0, PeerID: valID.String()}}}

	h := Home{Dir: t.TempDir()}
	if err := notAValidatorsHome(h, gen, valKey); err == nil || !strings.Contains(err.Error(), "validator 0's libp2p identity") {
		t.Fatalf("a validator's identity without its consensus key: %v", err)
	}
	own, _ := p2p.GenerateIdentity()
	if err := notAValidatorsHome(h, gen, own); err != nil {
		t.Fatalf("a full node's own home refused: %v", err)
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "key_share"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := notAValidatorsHome(h, gen, own); err == nil || !strings.Contains(err.Error(), "key share") {
		t.Fatalf("a home with a key share: %v", err)
	}
}

// A node whose consensus keeps halting restarts ever more slowly: 2 s, then
// doubling, never more than a minute apart.
func TestRun_HaltRestartsBackOff(t *testing.T) {
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for halts, w := range want {
		if got := haltDelay(halts); got != w {
			t.Fatalf("after %d halts in a row: %s, want %s", halts, got, w)
		}
	}
	if got := haltDelay(1 << 20); got != time.Minute {
		t.Fatalf("after many halts: %s", got)
	}
}
