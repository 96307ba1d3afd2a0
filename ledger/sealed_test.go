package ledger

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"math"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// sealedNet is a committee with sealing keys and its sharing layout.
type sealedNet struct {
	*net
	sh    *Sharing
	privs []*ecdh.PrivateKey
	pubs  []*ecdh.PublicKey
}

func newSealedNet(t testing.TB, n, th int) *sealedNet {
	t.Helper()
	nw := testNet(t, n, th)
	sh, err := NewSharing(n, nw.com.F())
	if err != nil {
		t.Fatal(err)
	}
	s := &sealedNet{net: nw, sh: sh}
	for i := 0; i < n; i++ {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sk, err := SealKeyFromSeed(priv.Seed())
		if err != nil {
			t.Fatal(err)
		}
		pk, err := SealPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sk.PublicKey().Bytes(), pk.Bytes()) {
			t.Fatal("sealing key derived from the seed does not match the one derived from the consensus key")
		}
		s.privs, s.pubs = append(s.privs, sk), append(s.pubs, pk)
	}
	return s
}

// sealedLane is one dealt transfer placed in a lane.
type sealedLane struct {
	lane int
	bind SealBinding
	st   *SealedTransfer
}

func (s *sealedNet) deal(t testing.TB, lane int, amount, newBal uint64) sealedLane {
	t.Helper()
	bind := SealBinding{Chain: "test", From: AccountID{byte(lane), 1}, Nonce: uint64(lane)}
	st, err := s.p.Deal(s.sh, s.pubs, bind, TransferValues(amount, newBal), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return sealedLane{lane: lane, bind: bind, st: st}
}

// holderCiphertexts is what every validator attests for one batch: for each
// piece it holds and could open for every transfer, its ciphertext.
func (s *sealedNet) holderCiphertexts(t testing.TB, batch []sealedLane) map[int]map[int]*rlwe.Ciphertext {
	t.Helper()
	out := map[int]map[int]*rlwe.Ciphertext{}
	for v := 0; v < s.sh.N; v++ {
		opened := make([]map[int]*Piece, len(batch))
		ok := true
		for i, sl := range batch {
			ps, err := s.p.Open(s.sh, v, s.privs[v], sl.bind, sl.st)
			if err != nil {
				ok = false
				break
			}
			opened[i] = ps
		}
		if !ok {
			continue // abstains
		}
		out[v] = map[int]*rlwe.Ciphertext{}
		for _, k := range s.sh.Held(v) {
			var lps []LanePiece
			for i, sl := range batch {
				lps = append(lps, LanePiece{Lane: sl.lane, Piece: opened[i][k]})
			}
			ct, err := s.p.EncryptPieceBatch(s.keys.PK, lps, PieceBatchSeed("test", 1, 0, k, lps))
			if err != nil {
				t.Fatal(err)
			}
			out[v][k] = ct
		}
	}
	return out
}

// decide picks every piece by f+1 holders and sums them.
func (s *sealedNet) decide(t testing.TB, cts map[int]map[int]*rlwe.Ciphertext) (*rlwe.Ciphertext, []int) {
	t.Helper()
	var pieces []*rlwe.Ciphertext
	var named []int
	for k := 0; k < s.sh.Pieces(); k++ {
		att := map[int][32]byte{}
		byHash := map[[32]byte]*rlwe.Ciphertext{}
		for v, m := range cts {
			if ct, ok := m[k]; ok {
				h, err := PieceHash(ct)
				if err != nil {
					t.Fatal(err)
				}
				att[v], byHash[h] = h, ct
			}
		}
		h, faulty, err := s.sh.DecidePiece(k, att)
		if err != nil {
			t.Fatalf("piece %d: %v", k, err)
		}
		named = append(named, faulty...)
		pieces = append(pieces, byHash[h])
	}
	sum, err := s.p.SumPieces(pieces)
	if err != nil {
		t.Fatal(err)
	}
	return sum, named
}

func lanesOf(batch []sealedLane) []int {
	var l []int
	for _, b := range batch {
		l = append(l, b.lane)
	}
	return l
}

func TestSharing_AnyFValidatorsMissAPieceAndEveryPieceHasTwoFPlusOneHolders(t *testing.T) {
	for _, c := range []struct{ n, f, pieces int }{{1, 0, 1}, {4, 1, 4}, {7, 2, 21}, {10, 3, 120}} {
		sh, err := NewSharing(c.n, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if sh.Pieces() != c.pieces {
			t.Errorf("n=%d f=%d: %d pieces, want %d", c.n, c.f, sh.Pieces(), c.pieces)
		}
		for k := 0; k < sh.Pieces(); k++ {
			if h := len(sh.Holders(k)); h != c.n-c.f || h < 2*c.f+1 {
				t.Errorf("n=%d f=%d: piece %d has %d holders", c.n, c.f, k, h)
			}
		}
		// Every coalition of f validators misses the piece named by itself.
		Subsets(c.n, c.f, func(coal []int) {
			missed := false
			for k := 0; k < sh.Pieces() && !missed; k++ {
				all := true
				for _, v := range coal {
					if sh.Holds(v, k) {
						all = false
					}
				}
				missed = all || c.f == 0 && false
			}
			if c.f > 0 && !missed {
				t.Errorf("n=%d f=%d: coalition %v holds every piece", c.n, c.f, coal)
			}
		})
	}
	if _, err := NewSharing(4, 2); err == nil {
		t.Error("n=4 f=2 accepted")
	}
}

func TestSealed_HonestBatchDecidesTheDealtValues(t *testing.T) {
	s := newSealedNet(t, 4, 2)
	// lane 3: pays 40 of 100 (valid); lane 7: claims 60 of 50 (overdraft,
	// dealt as if the new balance were 50-60 wrapped: not a 32-bit value).
	batch := []sealedLane{s.deal(t, 3, 40, 60), s.deal(t, 7, 60, (50-60)&MaxAmount)}
	cts := s.holderCiphertexts(t, batch)
	// Honest holders computed bit-identical ciphertexts for each piece.
	for k := 0; k < s.sh.Pieces(); k++ {
		var first []byte
		for _, v := range s.sh.Holders(k) {
			b, _ := cts[v][k].MarshalBinary()
			if first == nil {
				first = b
			} else if !bytes.Equal(first, b) {
				t.Fatalf("holders of piece %d computed different ciphertexts", k)
			}
		}
	}
	sum, named := s.decide(t, cts)
	if len(named) != 0 {
		t.Fatalf("honest holders named: %v", named)
	}
	st, err := s.eng.trivialState(map[int]uint64{3: 100, 7: 50})
	if err != nil {
		t.Fatal(err)
	}
	_, v := s.verdicts(t, st, []Item{{CT: sum, Lanes: lanesOf(batch)}}, []int{0, 1})
	if v[3] != Accepted || v[7] == Accepted {
		t.Fatalf("verdicts %v: want lane 3 accepted and lane 7 rejected", v)
	}
}

// A validator cannot strip its own missing piece: it holds no seed of it,
// and each box opens only for its recipient.
func TestSealed_AValidatorOpensOnlyItsOwnBox(t *testing.T) {
	s := newSealedNet(t, 4, 2)
	sl := s.deal(t, 1, 5, 10)
	for v := 0; v < 4; v++ {
		for w := 0; w < 4; w++ {
			if w == v {
				continue
			}
			// Validator v tries its key on w's box (as if it were its own).
			st := *sl.st
			st.Boxes = append([][]byte(nil), sl.st.Boxes...)
			st.Boxes[v] = sl.st.Boxes[w]
			if _, err := s.p.Open(s.sh, v, s.privs[v], sl.bind, &st); !errors.Is(err, ErrSealed) {
				t.Fatalf("validator %d opened validator %d's box: %v", v, w, err)
			}
		}
		ps, err := s.p.Open(s.sh, v, s.privs[v], sl.bind, sl.st)
		if err != nil {
			t.Fatal(err)
		}
		for k := range ps {
			if !s.sh.Holds(v, k) {
				t.Fatalf("validator %d got piece %d it must not hold", v, k)
			}
		}
		if len(ps) != len(s.sh.Held(v)) {
			t.Fatalf("validator %d got %d pieces, holds %d", v, len(ps), len(s.sh.Held(v)))
		}
	}
}

// The decryption oracle of DESIGN §8.3: re-uploading a victim's sealed
// shares under another envelope. Every box is bound to the envelope (chain,
// sender, nonce) and to the commitments it was dealt with, so no validator
// opens a copy: nothing of the victim's is encrypted, evaluated or decrypted.
func TestAttack_CopiedSealedSharesUnderAnotherEnvelopeOpenNowhere(t *testing.T) {
	s := newSealedNet(t, 4, 2)
	victim := s.deal(t, 2, 1234, 5678)
	for _, bind := range []SealBinding{
		{Chain: "test", From: AccountID{0xee}, Nonce: victim.bind.Nonce},      // another sender
		{Chain: "test", From: victim.bind.From, Nonce: victim.bind.Nonce + 1}, // the victim's next nonce
		{Chain: "other", From: victim.bind.From, Nonce: victim.bind.Nonce},    // another chain
	} {
		for v := 0; v < 4; v++ {
			if _, err := s.p.Open(s.sh, v, s.privs[v], bind, victim.st); !errors.Is(err, ErrSealed) {
				t.Fatalf("validator %d opened a copy under %+v: %v", v, bind, err)
			}
		}
	}
	// Copying the boxes with the attacker's own commitments fails too.
	mine := s.deal(t, 2, 1, 1)
	mixed := &SealedTransfer{Commits: mine.st.Commits, Boxes: victim.st.Boxes}
	for v := 0; v < 4; v++ {
		if _, err := s.p.Open(s.sh, v, s.privs[v], victim.bind, mixed); !errors.Is(err, ErrSealed) {
			t.Fatalf("validator %d opened victim boxes under other commitments: %v", v, err)
		}
	}
}

// A byzantine holder that encrypts a shifted piece (one more in amount bit 0
// and one less in new-balance bit 0, which keeps every check valid and would
// move an extra unit) is outvoted by the piece's other holders and named;
// the transfer goes through with the dealt amount.
func TestAttack_ValidatorEncryptingAShiftedPieceIsOutvotedAndNamed(t *testing.T) {
	s := newSealedNet(t, 4, 2)
	batch := []sealedLane{s.deal(t, 5, 2, 8)} // pays 2 of 10: amount bit 1, new balance bits 3
	cts := s.holderCiphertexts(t, batch)
	const byz = 1
	k := s.sh.Held(byz)[0]
	// The shift: amount 2 -> 3 and new balance 8 -> 7, both still 32-bit
	// values summing to the balance of 10: every check passes.
	opened, err := s.p.Open(s.sh, byz, s.privs[byz], batch[0].bind, batch[0].st)
	if err != nil {
		t.Fatal(err)
	}
	tm := s.p.BGV.PlaintextModulus()
	shifted := &Piece{Values: append([]uint64(nil), opened[k].Values...), Seed: opened[k].Seed}
	delta := make([]uint64, SlotValues)
	delta[0] = 1                 // amount bit 0: 0 -> 1 (value 2^0)
	delta[AmountBits+3] = tm - 8 // new balance bit 3: 1 -> 0 (value 2^3 -> 0)
	delta[AmountBits+0], delta[AmountBits+1], delta[AmountBits+2] = 1, 2, 4
	for i := range delta {
		shifted.Values[i] = (shifted.Values[i] + delta[i]) % tm
	}
	lps := []LanePiece{{Lane: 5, Piece: shifted}}
	bad, err := s.p.EncryptPieceBatch(s.keys.PK, lps, PieceBatchSeed("test", 1, 0, k, lps))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.eng.trivialState(map[int]uint64{5: 10})

	// Were the shifted piece used, the theft would pass every check.
	forged := map[int]map[int]*rlwe.Ciphertext{byz: {k: bad}}
	for v, m := range cts {
		if v != byz {
			forged[v] = map[int]*rlwe.Ciphertext{}
			for kk, ct := range m {
				if kk != k {
					forged[v][kk] = ct
				}
			}
		}
	}
	var pieces []*rlwe.Ciphertext
	for kk := 0; kk < s.sh.Pieces(); kk++ {
		if kk == k {
			pieces = append(pieces, bad)
		} else {
			pieces = append(pieces, cts[s.sh.Holders(kk)[0]][kk])
		}
	}
	theft, _ := s.p.SumPieces(pieces)
	ev, v := s.verdicts(t, st, []Item{{CT: theft, Lanes: []int{5}}}, []int{0, 2})
	if v[5] != Accepted {
		t.Fatalf("the shifted piece should be a valid-looking transfer (that is the threat); got %v", v)
	}
	_ = ev

	// With the majority rule the shifted piece loses.
	cts[byz][k] = bad
	sum, named := s.decide(t, cts)
	if len(named) != 1 || named[0] != byz {
		t.Fatalf("named %v, want [%d]", named, byz)
	}
	ev, v = s.verdicts(t, st, []Item{{CT: sum, Lanes: []int{5}}}, []int{0, 2})
	if v[5] != Accepted {
		t.Fatalf("honest transfer rejected: %v", v)
	}
	d, err := s.eng.Apply(ev, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.eng.ApplyDelta(st, d.Debit, -1)
	if err != nil {
		t.Fatal(err)
	}
	a := newAccount(t, s.p, 5)
	if got := s.balance(t, after, a); got != 8 {
		t.Fatalf("balance after paying 2 of 10 is %d, want 8", got)
	}
}

// sealRaw seals arbitrary box content to validator v under a binding.
func sealRaw(t testing.TB, pk *ecdh.PublicKey, bind SealBinding, v int, commits [][32]byte, content []byte) []byte {
	t.Helper()
	hpk, err := hpke.NewDHKEMPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	box, err := hpke.Seal(hpk, sealKDF, sealAEAD, bind.info(v, commits), content)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// A client that deals one validator a piece that does not match its public
// commitment (or a box that does not open) cannot frame it: that validator
// detects the bad deal and abstains, is not named, and the other holders
// decide the batch; nobody else's transfer is affected.
func TestAttack_InconsistentDealCannotFrameAnHonestValidator(t *testing.T) {
	s := newSealedNet(t, 4, 2)
	honest := s.deal(t, 1, 3, 4)
	cheat := s.deal(t, 2, 1, 1)
	const target = 3
	// Box for the target: right layout, one piece value altered.
	opened, err := s.p.Open(s.sh, target, s.privs[target], cheat.bind, cheat.st)
	if err != nil {
		t.Fatal(err)
	}
	var w bytes.Buffer
	w.WriteByte(sealedVersion)
	vb := valueBytes(s.p.BGV.PlaintextModulus())
	for _, k := range s.sh.Held(target) {
		w.Write([]byte{0, 0, 0, byte(k)})
		w.Write(opened[k].Seed[:])
		if k == 0 {
			for i, x := range opened[0].Values {
				if i == 0 {
					x ^= 1
				}
				var b [8]byte
				for j := 0; j < 8; j++ {
					b[7-j] = byte(x >> (8 * j))
				}
				w.Write(b[8-vb:])
			}
		}
	}
	cheat.st.Boxes[target] = sealRaw(t, s.pubs[target], cheat.bind, target, cheat.st.Commits, w.Bytes())
	if !s.sh.Holds(target, 0) {
		t.Fatal("test expects the target to hold the explicit piece")
	}
	if _, err := s.p.Open(s.sh, target, s.privs[target], cheat.bind, cheat.st); !errors.Is(err, ErrSealed) {
		t.Fatalf("altered piece opened: %v", err)
	}
	batch := []sealedLane{honest, cheat}
	cts := s.holderCiphertexts(t, batch)
	if _, ok := cts[target]; ok {
		t.Fatal("the target should abstain on a batch it cannot encrypt")
	}
	sum, named := s.decide(t, cts)
	if len(named) != 0 {
		t.Fatalf("an honest validator was named: %v", named)
	}
	st, _ := s.eng.trivialState(map[int]uint64{1: 7, 2: 2})
	_, v := s.verdicts(t, st, []Item{{CT: sum, Lanes: []int{1, 2}}}, []int{0, 1})
	if v[1] != Accepted {
		t.Fatalf("the honest transfer beside a cheating dealer was rejected: %v", v)
	}
}

// The key recovery of DESIGN §8.2 needs a ciphertext whose c1 or noise the
// client chose. A sealed upload carries none: the client chooses only piece
// values (plaintexts) and seeds, and every ciphertext is sampled by a
// validator from Lattigo's distributions. Even with all seeds fixed by the
// attacker and extreme piece values, the check ciphertexts' noise stays
// within the bound the smudging is sized for.
func TestAttack_KeyRecoveryHasNoEntryPoint_NoiseStaysWithinTheSmudgingBound(t *testing.T) {
	nw := testNet(t, 1, 1)
	sh, _ := NewSharing(1, 0)
	tm := nw.p.BGV.PlaintextModulus()
	var lps []LanePiece
	balances := map[int]uint64{}
	for l := 0; l < nw.p.Lanes; l++ {
		vals := make([]uint64, SlotValues)
		for i := range vals {
			vals[i] = tm - 1 // the largest plaintext, every slot
		}
		lps = append(lps, LanePiece{Lane: l, Piece: &Piece{Values: vals}}) // all-zero seeds
		balances[l] = MaxAmount
	}
	_ = sh
	ct, err := nw.p.EncryptPieceBatch(nw.keys.PK, lps, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := nw.eng.trivialState(balances)
	lanes := make([]int, nw.p.Lanes)
	for i := range lanes {
		lanes[i] = i
	}
	ev, err := nw.eng.Evaluate(st, []Item{{CT: ct, Lanes: lanes}}, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*rlwe.Ciphertext{"bits": ev.Checks.Bits, "eq": ev.Checks.Eq} {
		noise := nw.noiseOf(t, c)
		t.Logf("%s check noise with attacker-chosen values and seeds: max |e| = 2^%.1f (bound 2^%.0f)", name, math.Log2(noise), math.Log2(checkNoiseBound))
		if noise >= checkNoiseBound {
			t.Errorf("%s: noise 2^%.1f exceeds the bound the smudging is sized for", name, math.Log2(noise))
		}
	}
}

func FuzzSealedTransferDecode(f *testing.F) {
	s := newSealedNet(f, 4, 2)
	sl := s.deal(f, 0, 1, 2)
	b, _ := sl.st.MarshalBinary()
	f.Add(b)
	f.Add([]byte{sealedVersion, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		var st SealedTransfer
		if err := st.UnmarshalBinary(p); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		back, _ := st.MarshalBinary()
		if !bytes.Equal(back, p) {
			t.Fatal("decode/encode is not the identity")
		}
		// Whatever decodes, opening it fails cleanly or yields pieces that
		// match their commitments.
		ps, err := s.p.Open(s.sh, 0, s.privs[0], sl.bind, &st)
		if err != nil {
			if !errors.Is(err, ErrSealed) {
				t.Fatalf("open error not ErrSealed: %v", err)
			}
			return
		}
		for k, pc := range ps {
			if err := s.p.VerifyPiece(&st, k, pc); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzSealedBoxContent(f *testing.F) {
	s := newSealedNet(f, 4, 2)
	sl := s.deal(f, 0, 1, 2)
	f.Add([]byte{sealedVersion})
	f.Add(append([]byte{sealedVersion, 0, 0, 0, 0}, make([]byte, 400)...))
	f.Fuzz(func(t *testing.T, content []byte) {
		st := &SealedTransfer{Commits: sl.st.Commits, Boxes: append([][]byte(nil), sl.st.Boxes...)}
		st.Boxes[0] = sealRaw(t, s.pubs[0], sl.bind, 0, st.Commits, content)
		ps, err := s.p.Open(s.sh, 0, s.privs[0], sl.bind, st)
		if err != nil {
			if !errors.Is(err, ErrSealed) {
				t.Fatalf("open error not ErrSealed: %v", err)
			}
			return
		}
		for k, pc := range ps {
			if err := s.p.VerifyPiece(st, k, pc); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	s := newSealedNet(b, 4, 2)
	sl := s.deal(b, 0, 1, 2)
	for b.Loop() {
		if _, err := s.p.Open(s.sh, 0, s.privs[0], sl.bind, sl.st); err != nil {
			b.Fatal(err)
		}
	}
}

// One holder's encryption of one piece for a full batch of 256 transfers.
func BenchmarkEncryptPieceBatch(b *testing.B) {
	s := newSealedNet(b, 4, 2)
	var lps []LanePiece
	for l := 0; l < s.p.Lanes; l++ {
		vals, _ := expandPiece(s.p.BGV.PlaintextModulus(), 1, [32]byte{byte(l)}, SlotValues)
		lps = append(lps, LanePiece{Lane: l, Piece: &Piece{Values: vals, Seed: [32]byte{byte(l)}}})
	}
	seed := PieceBatchSeed("test", 1, 0, 1, lps)
	for b.Loop() {
		if _, err := s.p.EncryptPieceBatch(s.keys.PK, lps, seed); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(s.p.Lanes), "us/transfer")
}

// A holder whose box did not open gets its pieces from a co-holder and
// keeps only those that match the dealer's commitments: a co-holder cannot
// hand it a shifted piece.
func TestSealed_PiecesFromACoHolderAreCheckedAgainstTheCommitments(t *testing.T) {
	s := newSealedNet(t, 4, 2)
	sl := s.deal(t, 1, 5, 10)
	mine, err := s.p.Open(s.sh, 0, s.privs[0], sl.bind, sl.st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.p.UnmarshalPieces(MarshalPieces(mine))
	if err != nil || len(got) != len(mine) {
		t.Fatalf("round trip: %d pieces, %v", len(got), err)
	}
	for k, pc := range got {
		if err := s.p.VerifyPiece(sl.st, k, pc); err != nil {
			t.Fatalf("piece %d: %v", k, err)
		}
		shifted := &Piece{Values: append([]uint64(nil), pc.Values...), Seed: pc.Seed}
		shifted.Values[0] = (shifted.Values[0] + 1) % s.p.BGV.PlaintextModulus()
		if err := s.p.VerifyPiece(sl.st, k, shifted); !errors.Is(err, ErrSealed) {
			t.Fatalf("a shifted piece %d passed: %v", k, err)
		}
	}
}

// A dealer colluding with a co-holder could commit to a seeded piece whose
// values are not its seed's expansion: Open refuses such a box, and so must
// recovery, or a byzantine co-holder would choose which honest validators
// hold the transfer.
func TestSealed_RecoveredSeededPieceMustBeItsSeedsExpansion(t *testing.T) {
	s := newSealedNet(t, 4, 2)
	sl := s.deal(t, 1, 5, 10)
	odd := &Piece{Values: make([]uint64, SlotValues), Seed: [32]byte{9}}
	st := *sl.st
	st.Commits = append([][32]byte(nil), sl.st.Commits...)
	st.Commits[1] = odd.commit(1)
	if err := s.p.VerifyPiece(&st, 1, odd); !errors.Is(err, ErrSealed) {
		t.Fatalf("a seeded piece that is not its seed's expansion passed: %v", err)
	}
}

func FuzzUnmarshalPieces(f *testing.F) {
	p := MustParams(ZKB128)
	f.Add(MarshalPieces(map[int]*Piece{1: {Values: make([]uint64, SlotValues)}}))
	f.Add([]byte{sealedVersion, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := p.UnmarshalPieces(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(MarshalPieces(ps), b) {
			t.Fatal("decode/encode is not the identity")
		}
	})
}
