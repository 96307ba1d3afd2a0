package chain

import (
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
)

// Tests of byzantine validators against the application: N = 4, f = 1,
// privacy threshold t = f+1 = 2, decisions by t+f = 3 agreeing validators.

// payAndOverdraw submits a valid payment and an overdraft, orders them in
// one block (height 3) and decides its pieces (height 4): the precommits of
// height 4, in n.last, carry the decryption shares of block 3's checks, and
// the next block decides them. It returns the two transfers.
func payAndOverdraw(n *chainNet) (pay, over *Upload) {
	n.step(0)
	pay = n.transfer("alice", "bob", 20, 100)
	over = n.transfer("carol", "bob", 80, 100) // carol has 50
	n.submit(pay)
	n.submit(over)
	n.step(1) // acks
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 2 {
		n.t.Fatalf("block 3 orders %d uploads, want 2", len(b.Subs))
	}
	n.step(3) // decides the pieces, evaluates block 3
	return pay, over
}

// assertDecidedRight checks validator i decided the payment accepted and
// the overdraft rejected for a reason other than "undecided".
func assertDecidedRight(t *testing.T, n *chainNet, i int, pay, over *Upload) {
	t.Helper()
	got := n.outcomes(i)
	if got[idOf(pay)] != ledger.Accepted {
		t.Fatalf("validator %d: payment %v", i, got[idOf(pay)])
	}
	if r := got[idOf(over)]; r == ledger.Accepted || r == ledger.RejectUndecided {
		t.Fatalf("validator %d: overdraft decided %v", i, r)
	}
}

func lastView(n *chainNet, i int) *View {
	v := n.vals[i].obs.views
	return v[len(v)-1]
}

// A validator sending wrong (well-formed, signed) shares: with all four
// precommits carried, the three honest ones agree and decide; the wrong one
// is identified and earns nothing. A block carrying exactly a quorum that
// includes the wrong share (only two agree, fewer than t+f) is refused, so
// a proposer cannot pick a quorum that fails a batch closed; with more than
// f wrong shares and every precommit carried, the batch fails closed, and
// nothing is ever accepted wrongly.
func TestWrongSharesAreOutvotedAndIdentified(t *testing.T) {
	t.Parallel()
	n := newChainNet(t, Faults{}, Faults{}, Faults{}, Faults{CorruptShares: true})
	pay, over := payAndOverdraw(n)

	quorum := &Block{Height: 5, LastCommit: n.carried(1, 2, 3)}
	for i, v := range n.vals {
		if err := v.app.ValidateProposal(5, quorum.Encode()); !errors.Is(err, ErrBlock) || !errors.Is(err, ledger.ErrNoAgreement) {
			t.Fatalf("validator %d: a quorum with a wrong share among exactly t+f: %v", i, err)
		}
	}
	before := n.vals[0].app.Credits()
	n.step(0) // carries all four
	for i := range n.vals {
		assertDecidedRight(t, n, i, pay, over)
		if v := lastView(n, i); len(v.Faulty) != 1 || v.Faulty[0] != 3 {
			t.Fatalf("validator %d identified %v, want [3]", i, v.Faulty)
		}
	}
	after := n.vals[0].app.Credits()
	if after[3] != before[3] {
		t.Fatalf("the validator with wrong shares earned %d credits", after[3]-before[3])
	}
	for v := 0; v < 3; v++ {
		if after[v]-before[v] != 2 { // one batch of two lanes
			t.Fatalf("honest validator %d earned %d credits for two lanes", v, after[v]-before[v])
		}
	}
}

// More than f validators sending wrong shares (here 2 of 4): even with every
// precommit carried no t+f agree, and the batch fails closed: undecided,
// never a wrong verdict.
func TestMoreThanFWrongSharesFailClosed(t *testing.T) {
	t.Parallel()
	n := newChainNet(t, Faults{}, Faults{}, Faults{CorruptShares: true}, Faults{CorruptShares: true})
	pay, over := payAndOverdraw(n)
	n.step(0)
	for _, u := range []*Upload{pay, over} {
		if r, ok := n.outcomes(0)[idOf(u)]; !ok || r != ledger.RejectUndecided {
			t.Fatalf("with 2 of 4 wrong: %v, want undecided", r)
		}
	}
	acct, _ := n.vals[0].app.book.Account(n.users["alice"].id)
	if acct.LastApply != 0 {
		t.Fatalf("a failed-closed transfer moved alice's pending funds at %d", acct.LastApply)
	}
}

// The rushing attack (DESIGN §8.5): validator 3 waits for validator 0's
// shares and crafts its own so that the pair {0, 3} decrypts every check to
// zero, which would accept the overdraft. Verdicts are unchanged (the three
// honest validators agree without it) and validator 3 is identified.
func TestRushingValidatorCannotShiftAVerdict(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	pay, over := payAndOverdraw(n)

	app0 := n.vals[0].app
	ext0, err := DecodeExt(n.last.Sigs[0].Extension)
	if err != nil {
		t.Fatal(err)
	}
	crafted := &Ext{Height: ext0.Height, Block: ext0.Block, Digest: ext0.Digest}
	for b, e := range app0.last.prev.evals {
		var pair [2][]byte
		for k, ct := range []*rlwe.Ciphertext{e.Checks.Bits, e.Checks.Eq} {
			d0, err := n.c.p.DecodeDecShare(ext0.Shares[b][k])
			if err != nil {
				t.Fatal(err)
			}
			d3 := craftZeroingShare(n, ct, d0)
			// The crafted share works against a naive combination of {0, 3}:
			// every check decrypts to zero.
			vals, err := n.c.dec.Combine(ct, []*ledger.DecShare{d0, d3})
			if err != nil {
				t.Fatal(err)
			}
			for s, v := range vals {
				if v != 0 {
					t.Fatalf("crafted share: slot %d decrypts to %d", s, v)
				}
			}
			pair[k], _ = d3.MarshalBinary()
		}
		crafted.Shares = append(crafted.Shares, pair)
	}
	// Validator 3 signs its crafted extension: its precommit is genuine.
	value, _ := n.vals[0].st.Block(n.height)
	n.height-- // precommitVote signs for n.height+1
	v3 := n.precommitVote(value, n.last.Round, 3, crafted.Encode())
	n.height++
	n.last.Sigs[3].Extension, n.last.Sigs[3].Signature = v3.Extension, v3.Signature

	n.step(0)
	for i := range n.vals {
		assertDecidedRight(t, n, i, pay, over)
		if v := lastView(n, i); len(v.Faulty) != 1 || v.Faulty[0] != 3 {
			t.Fatalf("validator %d identified %v, want [3]", i, v.Faulty)
		}
	}
}

// craftZeroingShare returns validator 3's share d3 with
// D*c0 + l0*d0 + l3*d3 = 0, so that {0, 3} decrypt ct to all zeros
// (l0, l3: the integer Lagrange coefficients of {0, 3}, points 1 and 4).
func craftZeroingShare(n *chainNet, ct *rlwe.Ciphertext, d0 *ledger.DecShare) *ledger.DecShare {
	delta := n.c.com.Delta
	l0 := new(big.Int).Div(new(big.Int).Mul(delta, big.NewInt(4)), big.NewInt(3)) // D * 4/3
	l3 := new(big.Int).Neg(new(big.Int).Div(delta, big.NewInt(3)))                // D * -1/3
	rq := n.c.p.BGV.RingQ().AtLevel(ct.Level())
	inv := new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Neg(l3), rq.Modulus()), rq.Modulus()) // (-l3)^-1
	acc := rq.NewPoly()
	rq.MulScalarBigint(ct.Value[0], delta, acc)
	rq.MulScalarBigintThenAdd(d0.Share.Value, l0, acc)
	out := &ledger.DecShare{Validator: 3}
	out.Share.Value = rq.NewPoly()
	rq.MulScalarBigint(acc, inv, out.Share.Value) // d3 = (D*c0 + l0*d0) / (-l3)
	return out
}

// Work credits are for verified work only: empty blocks earn nothing, and a
// validator that copies another's digest without computing the check
// ciphertexts (so its shares decrypt nothing) earns nothing and is named.
func TestCreditsOnlyForVerifiedWork(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	n.step(1)
	n.step(2)
	for i, c := range n.vals[0].app.Credits() {
		if c != 0 {
			t.Fatalf("validator %d earned %d credits for empty blocks", i, c)
		}
	}
	n.submit(n.transfer("alice", "bob", 5, 100))
	n.step(3) // acks
	n.step(0) // orders
	n.step(1) // decides the pieces: the precommits carry the shares
	for i, c := range n.vals[0].app.Credits() {
		if c != 0 {
			t.Fatalf("validator %d earned %d credits before any verdict", i, c)
		}
	}
	// Validator 3 copies validator 0's digest and shares a ciphertext it
	// made up instead of the check ciphertexts it never computed.
	ext0, _ := DecodeExt(n.last.Sigs[0].Extension)
	copied := &Ext{Height: ext0.Height, Block: ext0.Block, Digest: ext0.Digest}
	junk := rlwe.NewCiphertext(n.c.p.BGV, 1, ledger.LevelDecrypt)
	junk.Value[1].Coeffs[0][0] = 12345
	for range ext0.Shares {
		sh, err := n.c.dec.Share(n.c.shares[3], junk)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := sh.MarshalBinary()
		copied.Shares = append(copied.Shares, [2][]byte{b, b})
	}
	value, _ := n.vals[0].st.Block(n.height)
	n.height--
	v3 := n.precommitVote(value, n.last.Round, 3, copied.Encode())
	n.height++
	n.last.Sigs[3].Extension, n.last.Sigs[3].Signature = v3.Extension, v3.Signature
	n.step(2)
	cr := n.vals[1].app.Credits()
	if cr[0] != 1 || cr[1] != 1 || cr[2] != 1 || cr[3] != 0 {
		t.Fatalf("credits %v after one lane, want [1 1 1 0]", cr)
	}
	if v := lastView(n, 1); len(v.Faulty) != 1 || v.Faulty[0] != 3 {
		t.Fatalf("identified %v, want [3]", v.Faulty)
	}
}

// Sealed uploads are shared among f-subsets, so any f+1 validators hold
// every piece: a privacy threshold above f+1 protects nothing more (and
// decisions would need t+f agreeing validators, more than a quorum, so a
// validator down would fail every batch closed), one below would let f
// validators decrypt. An application for a committee whose threshold is not
// f+1 (3 of 4 here) refuses to start.
func TestThresholdOtherThanFPlusOneIsRefusedAtStart(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	for _, th := range []int{1, 3} {
		cfg := n.vals[0].cfg
		cfg.T = th
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "threshold") {
			t.Fatalf("a %d-of-4 committee: %v, want a refusal naming the threshold", th, err)
		}
	}
}

// attestation is validator i's signed attestation (consensus.Attestation)
// of the last finalized block: its extension for that block, extended after
// the block was finalized, as a validator left out of the certificate makes
// it.
func (n *chainNet) attestation(i int, value []byte) consensus.CommitSig {
	n.t.Helper()
	ext, err := n.vals[i].app.ExtendVote(n.height, n.last.Round, value)
	if err != nil {
		n.t.Fatalf("validator %d attests height %d: %v", i, n.height, err)
	}
	v := &consensus.Vote{Type: consensus.Attestation, Height: n.height, Round: consensus.AttestationRound, BlockID: consensus.HashValue(value), Validator: i, Extension: ext}
	consensus.SignVote(testChain, n.c.signers[i], v)
	return consensus.CommitSig{Validator: i, Extension: ext, Signature: v.Signature}
}

// A byzantine validator (3, wrong shares) whose precommit is in the
// certificate while an honest one's (0) is not: a byzantine proposer that
// withheld its proposal from validator 0 makes exactly this happen, since 0
// then precommits nil. The certificate's three extensions hold only two
// agreeing shares, fewer than t+f, and no further precommit can ever
// exist, so before attestations every proposal of the next height was
// refused and the chain halted. Validator 0's attestation (its extension for
// the finalized block, signed after the decision) is carried, the three
// honest validators agree, the verdicts are right and validator 3 is named.
// An attestation is not a precommit: it does not make a quorum, and it
// cannot be passed off as one (or a precommit as an attestation).
func TestAttack_HonestValidatorLeftOutOfTheCertificateOutvotesAWrongShare(t *testing.T) {
	t.Parallel()
	n := newChainNet(t, Faults{}, Faults{}, Faults{}, Faults{CorruptShares: true})
	n.step(0)
	pay := n.transfer("alice", "bob", 20, 100)
	over := n.transfer("carol", "bob", 80, 100) // carol has 50
	n.submit(pay)
	n.submit(over)
	n.step(1)
	n.step(2) // orders both
	value := n.propose(3)
	exts := n.precommit(value, 1)
	// Decided in round 1 by 1, 2 and 3; validator 0 precommitted nil. Its
	// attestation names no round (consensus.AttestationRound), so it is
	// carried next to precommits of another round.
	n.finalize(value, n.certify(value, 1, exts, 1, 2, 3))
	for i, v := range n.vals {
		if _, err := v.app.BuildProposal(n.height+1, n.last); !errors.Is(err, ledger.ErrNoAgreement) {
			t.Fatalf("validator %d builds from the certificate alone: %v (the halt attestations fix)", i, err)
		}
	}
	att := n.attestation(0, value)
	withAtt := *n.last
	withAtt.Attested = []consensus.CommitSig{att}
	if err := consensus.VerifyCommit(testChain, n.c.vals, &withAtt); err != nil {
		t.Fatalf("the certificate with an attestation: %v", err)
	}

	// Forgeries: the attestation passed off as a precommit, a precommit
	// passed off as an attestation, attestations alone as a quorum.
	carried := carry(&withAtt, true)
	if len(carried) != 4 || !carried[0].Attested || carried[1].Attested {
		t.Fatalf("carried %+v", carried)
	}
	asPrecommit := slices.Clone(carried)
	asPrecommit[0].Attested = false
	asAttestation := slices.Clone(carried)
	asAttestation[1].Attested = true
	otherRound := slices.Clone(carried)
	named := &consensus.Vote{Type: consensus.Attestation, Height: n.height, Round: 1, BlockID: consensus.HashValue(value), Validator: 0, Extension: att.Extension}
	consensus.SignVote(testChain, n.c.signers[0], named) // validly signed, naming round 1
	otherRound[0].Round, otherRound[0].Signature = 1, named.Signature
	for name, c := range map[string]struct {
		lc   []Precommit
		want string
	}{
		"attestation as a precommit":  {asPrecommit, "not its signed vote"},
		"precommit as an attestation": {asAttestation, "validator 1"},
		"attestation naming a round":  {otherRound, "names round 1"},
	} {
		b := &Block{Height: n.height + 1, LastCommit: c.lc}
		for i, v := range n.vals {
			if err := v.app.ValidateProposal(n.height+1, b.Encode()); !errors.Is(err, ErrBlock) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("validator %d: %s: %v", i, name, err)
			}
		}
	}
	short := carry(&consensus.CommitCertificate{Height: n.height, Round: n.last.Round, BlockID: n.last.BlockID, Sigs: n.last.Sigs[:1], Attested: []consensus.CommitSig{att}}, true)
	b := &Block{Height: n.height + 1, LastCommit: short}
	if err := n.vals[1].app.ValidateProposal(n.height+1, b.Encode()); err == nil || !strings.Contains(err.Error(), "voting power") {
		t.Fatalf("one precommit and an attestation passed for a quorum: %v", err)
	}

	n.last = &withAtt
	n.step(1)
	for i := range n.vals {
		assertDecidedRight(t, n, i, pay, over)
		if v := lastView(n, i); len(v.Faulty) != 1 || v.Faulty[0] != 3 {
			t.Fatalf("validator %d identified %v, want [3]", i, v.Faulty)
		}
	}
}
