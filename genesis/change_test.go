package genesis

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// committee returns n validators with their consensus keys.
func committee(t *testing.T, n int, from int) ([]Validator, []ed25519.PrivateKey) {
	t.Helper()
	var vals []Validator
	var keys []ed25519.PrivateKey
	for i := 0; i < n; i++ {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		vals = append(vals, Validator{Index: i, Name: fmt.Sprintf("v%d", from+i), PeerID: fmt.Sprintf("peer-%d", from+i),
			P2PAddrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 27000+from+i)}, ConsensusPub: hex.EncodeToString(pub),
			API: fmt.Sprintf("http://127.0.0.1:%d", 27100+from+i), Power: 1})
		keys = append(keys, priv)
	}
	return vals, keys
}

func testGenesis(t *testing.T, vals []Validator) *Genesis {
	t.Helper()
	g := &Genesis{ChainID: "change-test", ParamSet: ledger.ZKB128.Name, Threshold: DefaultThreshold(len(vals)), Validators: vals, Created: time.Unix(0, 0).UTC()}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return g
}

// addOne is the change adding one validator to g's committee, signed by
// the members in signers.
func addOne(t *testing.T, g *Genesis, keys []ed25519.PrivateKey, signers ...int) (*Change, ed25519.PrivateKey) {
	t.Helper()
	extra, ek := committee(t, 1, len(g.Validators))
	next := append(append([]Validator(nil), g.Validators...), extra[0])
	next[len(next)-1].Index = len(next) - 1
	c := &Change{ChainID: g.ChainID, Epoch: 1, Validators: next, Threshold: DefaultThreshold(len(next)), Reason: "add one"}
	for _, i := range signers {
		c.Sign(i, keys[i])
	}
	return c, ek[0]
}

func TestChange_QuorumSignedChangeVerifiesAndRoundTrips(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	c, _ := addOne(t, g, keys, 0, 2, 3)
	if err := c.Verify(g, g.Validators, 0); err != nil {
		t.Fatal(err)
	}
	d, err := DecodeChange(c.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Encode()) != string(c.Encode()) || d.Verify(g, g.Validators, 0) != nil {
		t.Fatal("a decoded change encodes or verifies differently")
	}
	// Re-signing replaces the signer's signature instead of counting twice.
	c.Sign(0, keys[0])
	if len(c.Signatures) != 3 {
		t.Fatalf("%d signatures after re-signing", len(c.Signatures))
	}
}

func TestAttack_ChangeWithoutAQuorumIsRefused(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	c, _ := addOne(t, g, keys, 0, 1) // 2 of 4: not more than two thirds
	if err := c.Verify(g, g.Validators, 0); err == nil || !strings.Contains(err.Error(), "more than two thirds") {
		t.Fatalf("2 of 4 signatures: %v", err)
	}
	// The same signer twice does not count twice.
	c.Signatures = append(c.Signatures, c.Signatures[0])
	if err := c.Verify(g, g.Validators, 0); err == nil {
		t.Fatal("a repeated signature made a quorum")
	}
}

func TestAttack_ForgedOrAlteredChangeSignatureIsRefused(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	c, _ := addOne(t, g, keys, 0, 1, 2)
	// A signature by a key that is not the claimed validator's.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	forged := *c
	forged.Signatures = append([]ChangeSig(nil), c.Signatures...)
	forged.Signatures[2] = ChangeSig{Validator: 2, Sig: hex.EncodeToString(ed25519.Sign(stranger, c.SigningBytes()))}
	if err := forged.Verify(g, g.Validators, 0); err == nil {
		t.Fatal("a signature by a stranger's key verified")
	}
	// Signed, then the committee altered (a member swapped for the attacker).
	altered := *c
	altered.Validators = append([]Validator(nil), c.Validators...)
	altered.Validators[4].ConsensusPub = hex.EncodeToString(stranger.Public().(ed25519.PublicKey))
	if err := altered.Verify(g, g.Validators, 0); err == nil {
		t.Fatal("a change altered after signing verified")
	}
	// Signed by an index outside the committee.
	out := *c
	out.Signatures = append(append([]ChangeSig(nil), c.Signatures...), ChangeSig{Validator: 7, Sig: c.Signatures[0].Sig})
	if err := out.Verify(g, g.Validators, 0); err == nil {
		t.Fatal("a signature by validator 7 of 4 was accepted")
	}
}

// A change is bound to its chain and epoch: it cannot be replayed on
// another chain or as a later epoch's change.
func TestAttack_ChangeReplayedOnAnotherChainOrEpochIsRefused(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	c, _ := addOne(t, g, keys, 0, 1, 2)
	other := *g
	other.ChainID = "another-chain"
	if err := c.Verify(&other, g.Validators, 0); err == nil {
		t.Fatal("a change verified on another chain")
	}
	if err := c.Verify(g, g.Validators, 1); err == nil {
		t.Fatal("epoch 1's change verified as epoch 2's")
	}
	// In a chain of changes, the first replayed as the second is refused.
	if err := g.VerifyChain([]Epoch{{Change: c, Start: 10}, {Change: c, Start: 20}}); err == nil {
		t.Fatal("a change replayed as the next epoch's verified")
	}
}

func TestAttack_MalformedNewCommitteeIsRefused(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	cases := map[string]func(c *Change){
		"threshold not f+1":      func(c *Change) { c.Threshold = 3 },
		"repeated consensus key": func(c *Change) { c.Validators[4].ConsensusPub = c.Validators[0].ConsensusPub },
		"repeated peer id":       func(c *Change) { c.Validators[4].PeerID = c.Validators[1].PeerID },
		"a member's key under another peer": func(c *Change) {
			c.Validators[1].PeerID = "peer-elsewhere"
		},
		"indexes out of order": func(c *Change) { c.Validators[4].Index = 7 },
		"no api":               func(c *Change) { c.Validators[4].API = "" },
		"unequal power":        func(c *Change) { c.Validators[4].Power = 5 },
		"empty committee":      func(c *Change) { c.Validators = nil; c.Threshold = 1 },
	}
	for name, mutate := range cases {
		c, _ := addOne(t, g, keys)
		mutate(c)
		for i := 0; i < 3; i++ {
			c.Sign(i, keys[i]) // signed after the mutation: the committee itself is the problem
		}
		if err := c.Verify(g, g.Validators, 0); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestChange_EpochsFileRoundTripsAndIsCheckedFromGenesis(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	c1, k4 := addOne(t, g, keys, 1, 2, 3)
	keys5 := append(append([]ed25519.PrivateKey(nil), keys...), k4)
	// Epoch 2 removes validator 0, signed by 4 of the 5.
	next := append([]Validator(nil), c1.Validators[1:]...)
	for i := range next {
		next[i].Index = i
	}
	c2 := &Change{ChainID: g.ChainID, Epoch: 2, Validators: next, Threshold: 2}
	for _, i := range []int{1, 2, 3, 4} {
		c2.Sign(i, keys5[i])
	}
	epochs := []Epoch{{Change: c1, Start: 12}, {Change: c2, Start: 30}}
	path := filepath.Join(t.TempDir(), EpochsFile)
	if err := SaveEpochs(path, epochs); err != nil {
		t.Fatal(err)
	}
	got, err := LoadEpochs(g, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d epochs read back", len(got))
	}
	at := g.At(got)
	if len(at.Validators) != 4 || at.Validators[0].PeerID != "peer-1" || at.Threshold != 2 || at.ChainID != g.ChainID {
		t.Fatalf("committee of epoch 2: %+v", at.Validators)
	}
	if len(g.Validators) != 4 || g.Validators[0].PeerID != "peer-0" {
		t.Fatal("At changed the genesis")
	}
	// Epoch 2 signed by the genesis committee's keys instead is refused
	// when the file is read.
	bad := *c2
	bad.Signatures = nil
	for _, i := range []int{0, 1, 2} {
		bad.Sign(i, keys[i])
	}
	bad.Signatures[0].Sig = bad.Signatures[1].Sig
	if err := SaveEpochs(path, []Epoch{{Change: c1, Start: 12}, {Change: &bad, Start: 30}}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadEpochs(g, path); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a bad epochs file read as %v", err)
	}
	// Start heights must increase.
	if err := g.VerifyChain([]Epoch{{Change: c1, Start: 12}, {Change: c2, Start: 12}}); err == nil {
		t.Fatal("two epochs starting at the same height verified")
	}
}

// The dealers of a resharing are the first t current members that stay,
// then the first that leave if fewer than t stay.
func TestChangeDealersPreferStayingMembers(t *testing.T) {
	cur := []Validator{{ConsensusPub: "a"}, {ConsensusPub: "b"}, {ConsensusPub: "c"}, {ConsensusPub: "d"}}
	for _, c := range []struct {
		next []string
		want []int
	}{
		{[]string{"b", "c", "d", "e"}, []int{1, 2}},
		{[]string{"d", "e", "f"}, []int{3, 0}},
		{[]string{"e", "f", "g"}, []int{0, 1}},
		{[]string{"a", "b", "c", "d", "e"}, []int{0, 1}},
	} {
		ch := &Change{}
		for _, p := range c.next {
			ch.Validators = append(ch.Validators, Validator{ConsensusPub: p})
		}
		if got := ch.Dealers(cur, 2); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Fatalf("next %v: dealers %v, want %v", c.next, got, c.want)
		}
	}
}
