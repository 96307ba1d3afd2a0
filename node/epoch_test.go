package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// proposeChange builds the change to committee next (epoch, threshold
// f+1), signs it with the consensus keys of the current committee's
// members in signers (home directories) and submits it to every current
// validator.
func (c *cluster) proposeChange(epoch uint64, cur, next []genesis.Validator, signers []string) *genesis.Change {
	c.t.Helper()
	for i := range next {
		next[i].Index = i
	}
	ch := &genesis.Change{ChainID: c.gen.ChainID, Epoch: epoch, Validators: next, Threshold: genesis.DefaultThreshold(len(next)), Reason: fmt.Sprintf("test epoch %d", epoch)}
	for _, home := range signers {
		if _, err := SignChange(home, ch, cur); err != nil {
			c.t.Fatal(err)
		}
	}
	queued := 0
	for _, v := range cur {
		r, err := client.New(v.API).SubmitChange(context.Background(), ch)
		if err != nil {
			c.t.Logf("change to %s: %v", v.API, err)
			continue
		}
		if r.Queued {
			queued++
		}
	}
	if queued == 0 {
		c.t.Fatal("no validator queued the change")
	}
	return ch
}

// apiIndex is the cluster index of the node serving api.
func (c *cluster) apiIndex(api string) int {
	for i, a := range c.apis {
		if a == api {
			return i
		}
	}
	c.t.Fatalf("no node serves %s", api)
	return -1
}

// waitEpoch waits until every member of committee vals reports epoch e and
// a height above its start.
func (c *cluster) waitEpoch(e uint64, vals []genesis.Validator) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("epoch %d on its %d validators", e, len(vals)), 5*time.Minute, func() bool {
		for _, v := range vals {
			st := c.status(c.apiIndex(v.API))
			if st.Epoch != e || st.Role != RoleValidator || st.Height < st.EpochStart+2 {
				return false
			}
		}
		return true
	})
}

// decryptsWith reports whether the two key shares (of committee com)
// decrypt ct to vals.
func decryptsWith(t *testing.T, p *ledger.Params, com *ledger.Committee, ct *rlwe.Ciphertext, vals []uint64, a, b *ledger.KeyShare) bool {
	t.Helper()
	dec, err := ledger.NewDecryptor(p, com)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := dec.Share(a, ct)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := dec.Share(b, ct)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dec.Combine(ct, []*ledger.DecShare{sa, sb})
	if err != nil {
		return false
	}
	for i := range vals {
		if got[i] != vals[i] {
			return false
		}
	}
	return true
}

// The scenario on real nodes: a 4-validator chain adds a fifth
// validator (a full node until then) by a change signed by three of the
// four, then removes validator 0 by a change signed by four of the five.
// Transfers commit in every epoch, balances decrypt the same across both
// changes, the new member's key share answers balance queries with any
// other member's, the removed member's old share is useless with the new
// committee's shares, and the public key never changes.
func TestEpoch_AddAFifthValidatorThenRemoveOne(t *testing.T) {
	if testing.Short() {
		t.Skip("two validator-set changes on a live cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 100000, "bob": 50000})
	c.waitReady(0, 1, 2, 3)
	gen0 := *c.gen
	home := func(name string) string { return filepath.Join(c.dir, name) }

	// Epoch 0: a transfer commits.
	st := c.send(c.dealer(), "alice", "bob", 1000, 100000, c.status(0).AppliedHeight, nil, 0)
	if st.Status != "committed" {
		t.Fatalf("epoch 0 transfer: %+v", st)
	}
	aliceBefore, _ := c.balance("alice", 0, 1, 2)
	bobBefore, _ := c.balance("bob", 0, 1, 2)

	// A probe ciphertext under the collective key, to test shares directly.
	keys0, _, err := loadKeys(c.p, Home{Dir: home("v0")})
	if err != nil {
		t.Fatal(err)
	}
	probe := make([]uint64, c.p.Slots)
	for i := range probe {
		probe[i] = uint64(i*7919+13) % (1 << 32)
	}
	pt := bgv.NewPlaintext(c.p.BGV, ledger.LevelDecrypt)
	if err := bgv.NewEncoder(c.p.BGV).Encode(probe, pt); err != nil {
		t.Fatal(err)
	}
	ct, err := rlwe.NewEncryptor(c.p.BGV, keys0.PK).EncryptNew(pt)
	if err != nil {
		t.Fatal(err)
	}

	// The fifth validator starts as a full node (it has the public keys).
	fifth, _ := c.startFull("v4", fullOpts{keys: true})
	c.waitFor("the full node to follow", 3*time.Minute, func() bool { return c.status(fifth).VerifiedHeight >= c.status(0).Height-2 })
	entry, err := ValidatorEntry(home("v4"), "v4")
	if err != nil {
		t.Fatal(err)
	}

	// A change signed by only two of four is refused.
	e1 := append(append([]genesis.Validator(nil), gen0.Validators...), entry)
	weak := &genesis.Change{ChainID: gen0.ChainID, Epoch: 1, Validators: e1, Threshold: 2}
	for i := range weak.Validators {
		weak.Validators[i].Index = i
	}
	for _, v := range []string{"v0", "v1"} {
		if _, err := SignChange(home(v), weak, gen0.Validators); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.New(c.apis[0]).SubmitChange(context.Background(), weak); err == nil {
		t.Fatal("a change signed by 2 of 4 validators was queued")
	} else {
		t.Logf("2 of 4 signatures: %v", err)
	}

	// Epoch 1: add v4, signed by v0, v1, v2.
	credits0 := c.status(1).WorkCredits
	ch1 := c.proposeChange(1, gen0.Validators, e1, []string{home("v0"), home("v1"), home("v2")})
	start := time.Now()
	c.waitEpoch(1, ch1.Validators)
	t.Logf("4 -> 5 validators: epoch 1 running %v after the change was submitted (height %d)", time.Since(start).Round(time.Millisecond), c.status(0).Height)
	g1 := gen0
	g1.Validators, g1.Threshold = ch1.Validators, ch1.Threshold
	c.gen = &g1
	// Work credits follow the new committee: one per member, the staying
	// members' carried over (they only grow), the newcomer's from zero.
	credits1 := c.status(1).WorkCredits
	if len(credits1) != 5 || len(credits0) != 4 {
		t.Fatalf("credits %v before, %v after adding a validator", credits0, credits1)
	}
	for i := range credits0 {
		if credits1[i] < credits0[i] {
			t.Fatalf("validator %d's credits fell from %d to %d across the change", i, credits0[i], credits1[i])
		}
	}

	// Clients see the new committee from the genesis alone.
	m, err := client.Current(context.Background(), &gen0, client.WithParams(c.p))
	if err != nil {
		t.Fatal(err)
	}
	if m.Epoch() != 1 || len(m.Genesis().Validators) != 5 {
		t.Fatalf("client sees epoch %d with %d validators", m.Epoch(), len(m.Genesis().Validators))
	}

	// Balances decrypt the same, the new member answering (t+f replies agree).
	if a, _ := c.balance("alice", fifth, 0, 1); a != aliceBefore {
		t.Fatalf("alice after adding a validator: %d, before %d", a, aliceBefore)
	}
	if b, _ := c.balance("bob", fifth, 2, 3); b != bobBefore {
		t.Fatalf("bob after adding a validator: %d, before %d", b, bobBefore)
	}
	com5, _ := ledger.NewCommittee(5, 2)
	_, ks4, err := loadKeys(c.p, Home{Dir: home("v4")})
	if err != nil {
		t.Fatal(err)
	}
	_, ks0e1, err := loadKeys(c.p, Home{Dir: home("v0")})
	if err != nil {
		t.Fatal(err)
	}
	if ks4.Index != 4 || ks4.N != 5 || !decryptsWith(t, c.p, com5, ct, probe, ks4, ks0e1) {
		t.Fatalf("the new member's share (%d of %d) does not decrypt with validator 0's", ks4.Index, ks4.N)
	}
	// Transfers commit, submitted through the new member.
	st = c.send(c.dealer(), "alice", "bob", 2000, aliceBefore, c.status(fifth).AppliedHeight, nil, fifth)
	if st.Status != "committed" {
		t.Fatalf("epoch 1 transfer through the new validator: %+v", st)
	}
	aliceBefore -= 2000
	bobBefore += 2000

	// Epoch 2: remove v0 (a dealer of the last change), signed by four of five.
	e2 := append([]genesis.Validator(nil), ch1.Validators[1:]...)
	ch2 := c.proposeChange(2, ch1.Validators, e2, []string{home("v1"), home("v2"), home("v3"), home("v4")})
	c.waitEpoch(2, ch2.Validators)
	g2 := gen0
	g2.Validators, g2.Threshold = ch2.Validators, ch2.Threshold
	c.gen = &g2
	if _, err := os.Stat(Home{Dir: home("v0")}.KeyShare()); !os.IsNotExist(err) {
		t.Fatalf("the removed validator kept its key share: %v", err)
	}
	c.waitFor("the removed validator to follow the new committee as a full node", time.Minute, func() bool {
		st := c.status(0)
		return st.Role == RoleFull && st.Epoch == 2 && st.VerifiedHeight > st.EpochStart+2
	})
	if cr := c.status(1).WorkCredits; len(cr) != 4 {
		t.Fatalf("credits %v in epoch 2", cr)
	}

	if a, _ := c.balance("alice", 1, 3, 4); a != aliceBefore {
		t.Fatalf("alice after removing a validator: %d, want %d", a, aliceBefore)
	}
	if b, _ := c.balance("bob", 2, 3, fifth); b != bobBefore {
		t.Fatalf("bob after removing a validator: %d, want %d", b, bobBefore)
	}
	st = c.send(c.dealer(), "bob", "alice", 500, 50000, c.status(1).AppliedHeight, nil, 1) // bob's available balance (credits are pending)
	if st.Status != "committed" {
		t.Fatalf("epoch 2 transfer: %+v", st)
	}

	// The removed member's old share (epoch 1, point 1) cannot stand in for
	// the new share at that point; the new shares decrypt.
	com4, _ := ledger.NewCommittee(4, 2)
	var news []*ledger.KeyShare
	for _, v := range []string{"v1", "v2", "v3", "v4"} {
		keys, ks, err := loadKeys(c.p, Home{Dir: home(v)})
		if err != nil {
			t.Fatal(err)
		}
		if !keys.PK.Equal(keys0.PK) {
			t.Fatalf("%s: the collective public key changed", v)
		}
		news = append(news, ks)
	}
	if !decryptsWith(t, c.p, com4, ct, probe, news[0], news[3]) {
		t.Fatal("new shares 0 and 3 do not decrypt")
	}
	stale := &ledger.KeyShare{Index: 0, N: 4, T: 2, Share: ks0e1.Share}
	for k := 1; k < 4; k++ {
		if decryptsWith(t, c.p, com4, ct, probe, stale, news[k]) {
			t.Fatalf("the removed member's old share decrypted with new share %d", k)
		}
	}

	// The committee history is served and verifies from genesis.
	var vs api.Validators
	if err := c.getJSON(1, api.PathValidators, &vs); err != nil {
		t.Fatal(err)
	}
	if vs.Epoch != 2 || len(vs.Epochs) != 2 {
		t.Fatalf("GET /v1/validators: epoch %d, %d changes", vs.Epoch, len(vs.Epochs))
	}
	var es []genesis.Epoch
	for _, raw := range vs.Epochs {
		var e genesis.Epoch
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if err := gen0.VerifyChain(es); err != nil {
		t.Fatal(err)
	}
}
