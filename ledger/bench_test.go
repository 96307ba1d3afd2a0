package ledger

import (
	"crypto/ecdh"
	"crypto/ed25519"
	crand "crypto/rand"
	"fmt"
	"math/rand"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// Benchmarks behind the figures in docs/PERFORMANCE.md. Run with
//
//	go test ./ledger -run '^$' -bench . -benchtime 5x -count 5

type benchBatch struct {
	nw    *net
	state *rlwe.Ciphertext
	items []Item
	lanes []int
	subs  []*testSub
}

var benchSingles, benchBundle *benchBatch

// singles: 256 transfers, one upload each (the worst case for bytes and
// isolation work); bundle: the same 256 transfers packed in one upload.
func makeBench(b *testing.B, packed bool) *benchBatch {
	nw := testNet(b, 4, 3)
	p := nw.p
	bb := &benchBatch{nw: nw}
	bal := map[int]uint64{}
	for l := 0; l < p.Lanes; l++ {
		bal[l] = 1_000_000
		bb.lanes = append(bb.lanes, l)
	}
	st, err := nw.eng.trivialState(bal)
	if err != nil {
		b.Fatal(err)
	}
	bb.state = st
	builder := newBuilder(p, nw.keys.PK, "bench")
	a := newAccount(b, p, 0)
	var specs []TransferSpec
	for l := 0; l < p.Lanes; l++ {
		specs = append(specs, TransferSpec{From: a.id, Lane: l, Key: a.key, To: AccountID{byte(l)}, Amount: uint64(1 + l), Balance: 1_000_000, Nonce: 1})
	}
	if packed {
		sub, err := builder.Build(specs...)
		if err != nil {
			b.Fatal(err)
		}
		bb.subs = []*testSub{sub}
		bb.items = []Item{{CT: nw.upload(b, sub), Lanes: bb.lanes}}
		return bb
	}
	for _, s := range specs {
		sub, err := builder.Build(s)
		if err != nil {
			b.Fatal(err)
		}
		bb.subs = append(bb.subs, sub)
		bb.items = append(bb.items, Item{CT: nw.upload(b, sub), Lanes: []int{s.Lane}})
	}
	return bb
}

// BenchmarkValidateBatch is one validator's whole job for a full batch of 256
// single-transfer uploads: isolation, the circuit, and its own two decryption
// shares.
func BenchmarkValidateBatch(b *testing.B) {
	if benchSingles == nil {
		benchSingles = makeBench(b, false)
	}
	benchValidate(b, benchSingles)
}

// BenchmarkValidateBundle is the same for 256 transfers packed in one upload.
func BenchmarkValidateBundle(b *testing.B) {
	if benchBundle == nil {
		benchBundle = makeBench(b, true)
	}
	benchValidate(b, benchBundle)
}

func benchValidate(b *testing.B, bb *benchBatch) {
	nw := bb.nw
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev, err := nw.eng.Evaluate(bb.state, bb.items, []byte("bench"))
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := nw.dec.ShareChecks(nw.shares[0], &ev.Checks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(bb.lanes)*b.N)/b.Elapsed().Seconds(), "transfers/s")
	upload := 0
	for _, s := range bb.subs {
		upload += len(s.Ciphertext)
	}
	b.ReportMetric(float64(upload)/float64(len(bb.lanes)), "upload-B/transfer")
}

// BenchmarkBuildTransfer is a wallet building one upload: sealed shares for
// the validators of an N-validator committee and the signed envelope. It
// needs no homomorphic key, so no ceremony.
func BenchmarkBuildTransfer(b *testing.B) {
	p := MustParams(ZKB128)
	for _, n := range []int{4, 7} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			sh, err := NewSharing(n, (n-1)/3)
			if err != nil {
				b.Fatal(err)
			}
			keys := make([]*ecdh.PublicKey, n)
			for i := range keys {
				pub, _, _ := ed25519.GenerateKey(crand.Reader)
				if keys[i], err = SealPublicKey(pub); err != nil {
					b.Fatal(err)
				}
			}
			d, err := NewDealer(p, sh, keys, "bench")
			if err != nil {
				b.Fatal(err)
			}
			a := newAccount(b, p, 0)
			var size int
			for b.Loop() {
				sub, err := d.Build(TransferSpec{From: a.id, Key: a.key, To: AccountID{1}, Amount: 1234, Balance: 99999, Nonce: 1})
				if err != nil {
					b.Fatal(err)
				}
				raw, _ := sub.MarshalBinary()
				size = len(raw)
			}
			b.ReportMetric(float64(size), "upload-B")
		})
	}
}

// BenchmarkValidatorBatch is one validator's whole work on a full shard batch
// of 256 single transfers at N = 4 (t = 2): open its 256 boxes, encrypt the
// 3 pieces it holds of the batch and of its credits (one credit layer), sum
// the 4 decided pieces, evaluate the checks and make its decryption shares.
// Deciding and applying are measured elsewhere (BenchmarkDecideChecks,
// BenchmarkApply).
func BenchmarkValidatorBatch(b *testing.B) {
	s := newSealedNet(b, 4, 2)
	var batch []sealedLane
	balances := map[int]uint64{}
	for l := 0; l < s.p.Lanes; l++ {
		batch = append(batch, s.deal(b, l, 7, 993))
		balances[l] = 1000
	}
	st, err := s.eng.trivialState(balances)
	if err != nil {
		b.Fatal(err)
	}
	// The pieces validator 0 does not hold, as its peers would send them.
	others := s.holderCiphertexts(b, batch)
	const self = 0
	lanes := lanesOf(batch)
	for b.Loop() {
		opened := make([]map[int]*Piece, len(batch))
		for i, sl := range batch {
			ps, err := s.p.Open(s.sh, self, s.privs[self], sl.bind, sl.st)
			if err != nil {
				b.Fatal(err)
			}
			opened[i] = ps
		}
		pieces := make([]*rlwe.Ciphertext, s.sh.Pieces())
		for _, k := range s.sh.Held(self) {
			lps := make([]LanePiece, len(batch))
			for i, sl := range batch {
				lps[i] = LanePiece{Lane: sl.lane, Piece: opened[i][k]}
			}
			ct, err := s.p.EncryptPieceBatch(s.keys.PK, lps, PieceBatchSeed("test", 1, 0, k, lps))
			if err != nil {
				b.Fatal(err)
			}
			pieces[k] = ct
			// Its piece of the batch's credits (credit.go): one layer, the
			// receivers a permutation of the lanes.
			lcs := make([]LaneCredit, len(batch))
			for i, sl := range batch {
				lcs[i] = LaneCredit{Lane: (sl.lane*37 + 11) % s.p.Lanes, Piece: opened[i][k]}
			}
			if _, err := s.p.EncryptCreditBatch(s.keys.PK, lcs, CreditBatchSeed("test", 1, 1, k, lcs)); err != nil {
				b.Fatal(err)
			}
		}
		for k := range pieces {
			if pieces[k] == nil {
				pieces[k] = others[s.sh.Holders(k)[0]][k]
			}
		}
		sum, err := s.p.SumPieces(pieces)
		if err != nil {
			b.Fatal(err)
		}
		ev, err := s.eng.Evaluate(st, []Item{{CT: sum, Lanes: lanes}}, []byte("bench"))
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.dec.ShareChecks(s.shares[self], &ev.Checks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(batch)*b.N)/b.Elapsed().Seconds(), "transfers/s")
}

func BenchmarkDecodeUpload(b *testing.B) {
	nw := testNet(b, 4, 3)
	sub, _ := newBuilder(nw.p, nw.keys.PK, "bench").Build(TransferSpec{From: AccountID{2}, Lane: 7, Key: newAccount(b, nw.p, 0).key, To: AccountID{1}, Amount: 1, Balance: 9, Nonce: 1})
	b.SetBytes(int64(len(sub.Ciphertext)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := nw.p.DecodeUpload(sub.Ciphertext); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEval(b *testing.B) (*net, *Evaluation) {
	if benchBundle == nil {
		benchBundle = makeBench(b, true)
	}
	ev, err := benchBundle.nw.eng.Evaluate(benchBundle.state, benchBundle.items, []byte("bench"))
	if err != nil {
		b.Fatal(err)
	}
	return benchBundle.nw, ev
}

func BenchmarkDecryptionShare(b *testing.B) {
	nw, ev := benchEval(b)
	b.ResetTimer()
	var sz int
	for i := 0; i < b.N; i++ {
		s, err := nw.dec.Share(nw.shares[1], ev.Checks.Bits)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := s.MarshalBinary()
		sz = len(raw)
	}
	b.ReportMetric(float64(sz), "share-B")
}

// BenchmarkCombine decodes both check ciphertexts of a batch from t=3 shares
// and reads the 256 verdicts.
func BenchmarkCombine(b *testing.B) {
	nw, ev := benchEval(b)
	var bs, es []*DecShare
	for i := 0; i < 3; i++ {
		x, y, _ := nw.dec.ShareChecks(nw.shares[i], &ev.Checks)
		bs, es = append(bs, x), append(es, y)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v, err := nw.dec.DecryptChecks(ev, bs, es)
		if err != nil || len(v) != 256 {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply turns a fully accepted batch of 256 into the debit and the
// credits of 256 payments to random lanes of 1 or 4 receiving shards: the
// validators' credit ciphertexts (credit.go) are given, as decided; what is
// timed is what every validator does with them.
func BenchmarkApply(b *testing.B) {
	nw, ev := benchEval(b)
	bl := newBuilder(nw.p, nw.keys.PK, "bench")
	for _, shards := range []int{1, 4} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			r := rand.New(rand.NewSource(1))
			v := map[int]Reason{}
			lanes := make([]int, len(ev.Lanes))
			for i := range lanes {
				lanes[i] = r.Intn(nw.p.Lanes)
			}
			layer, index, extra := nw.p.CreditLayout(lanes, nil)
			layers := extra + 1 // with no senders given, layer 0 is a ciphertext of its own
			at := make([]map[int]uint64, layers)
			for i := range at {
				at[i] = map[int]uint64{}
			}
			for i := range lanes {
				at[layer[i]][nw.p.Slot(0, index[i], lanes[i])] = 1
			}
			cts := make([]*rlwe.Ciphertext, layers)
			for i := range cts {
				cts[i] = bl.creditCT(b, at[i])
			}
			var credits []Credit
			for i, l := range ev.Lanes {
				v[l] = Accepted
				credits = append(credits, Credit{SourceLane: l, TargetShard: uint32(r.Intn(shards)), CT: cts[layer[i]], Slot: nw.p.Slot(0, index[i], lanes[i])})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := nw.eng.Apply(ev, v, credits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(credits)*b.N)/b.Elapsed().Seconds(), "transfers/s")
		})
	}
}

// BenchmarkBalanceQuery is one balance query end to end: a validator isolates
// and re-encrypts (3 validators' shares), the owner combines and decrypts.
func BenchmarkBalanceQuery(b *testing.B) {
	nw := testNet(b, 4, 3)
	st, _ := nw.eng.trivialState(map[int]uint64{5: 4242})
	a := newAccount(b, nw.p, 5)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ct, err := nw.eng.BalanceCiphertext(st, 5)
		if err != nil {
			b.Fatal(err)
		}
		var shares []*ReencShare
		for v := 0; v < 3; v++ {
			s, err := nw.dec.ReencShare(nw.shares[v], ct, a.own.PK)
			if err != nil {
				b.Fatal(err)
			}
			shares = append(shares, s)
		}
		out, err := nw.dec.CombineReenc(ct, shares)
		if err != nil {
			b.Fatal(err)
		}
		if got, _ := nw.p.DecryptBalance(a.own, out, 5); got != 4242 {
			b.Fatalf("balance %d", got)
		}
	}
}

func BenchmarkCeremony4(b *testing.B) {
	p := MustParams(ZKB128)
	com, _ := NewCommittee(4, 3)
	for i := 0; i < b.N; i++ {
		if _, _, err := runCeremony(p, com, []byte("bench")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidatorBatchPayMany is BenchmarkValidatorBatch for pay-many
// uploads: 8 payers paying 31 payees each fill the 256 lanes of a batch
// (8 paying lanes, 248 lent ones), so one validator's work is per 248
// payments: open 8 boxes, encrypt its pieces (batch and credits), sum,
// evaluate (two isolations), its shares.
func BenchmarkValidatorBatchPayMany(b *testing.B) {
	s := newSealedNet(b, 4, 2)
	const payers, payees = 8, 31
	type dealt struct {
		bind SealBinding
		st   *SealedTransfer
		lane int
		subs []int
	}
	var batch []dealt
	balances := map[int]uint64{}
	amounts := make([]uint64, payees)
	for i := range amounts {
		amounts[i] = 3
	}
	next := payers
	for l := 0; l < payers; l++ {
		bind := SealBinding{Chain: "test", From: AccountID{byte(l), 2}, Nonce: 1, Values: ValuesFor(payees)}
		st, err := s.p.Deal(s.sh, s.pubs, bind, ManyValues(amounts, 1000-3*payees), crand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		d := dealt{bind: bind, st: st, lane: l}
		for j := 0; j < payees; j++ {
			d.subs = append(d.subs, next)
			next++
		}
		batch = append(batch, d)
		balances[l] = 1000
	}
	st, err := s.eng.trivialState(balances)
	if err != nil {
		b.Fatal(err)
	}
	const self = 0
	item := Item{Lanes: make([]int, payers), Subs: map[int][]int{}}
	for i, d := range batch {
		item.Lanes[i] = d.lane
		item.Subs[d.lane] = d.subs
	}
	// Every piece, as validator 0's peers would send the ones it lacks.
	all := map[int]*rlwe.Ciphertext{}
	encrypt := func(k int, opened []map[int]*Piece) *rlwe.Ciphertext {
		lps := make([]LanePiece, len(batch))
		var lcs []LaneCredit
		for i, d := range batch {
			lps[i] = LanePiece{Lane: d.lane, Piece: opened[i][k], Subs: d.subs}
			for j := 0; j < payees; j++ {
				lcs = append(lcs, LaneCredit{Lane: (i*payees + j) % s.p.Lanes, Index: (i*payees + j) / s.p.Lanes, Piece: opened[i][k], Part: 1 + j})
			}
		}
		ct, err := s.p.EncryptPieceBatch(s.keys.PK, lps, PieceBatchSeed("test", 1, 0, k, lps))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.p.EncryptCreditBatch(s.keys.PK, lcs, CreditBatchSeed("test", 1, 1, k, lcs)); err != nil {
			b.Fatal(err)
		}
		return ct
	}
	open := func(v int) []map[int]*Piece {
		opened := make([]map[int]*Piece, len(batch))
		for i, d := range batch {
			ps, err := s.p.Open(s.sh, v, s.privs[v], d.bind, d.st)
			if err != nil {
				b.Fatal(err)
			}
			opened[i] = ps
		}
		return opened
	}
	for k := 0; k < s.sh.Pieces(); k++ {
		all[k] = encrypt(k, open(s.sh.Holders(k)[0]))
	}
	for b.Loop() {
		opened := open(self)
		pieces := make([]*rlwe.Ciphertext, s.sh.Pieces())
		for _, k := range s.sh.Held(self) {
			pieces[k] = encrypt(k, opened)
		}
		for k := range pieces {
			if pieces[k] == nil {
				pieces[k] = all[k]
			}
		}
		sum, err := s.p.SumPieces(pieces)
		if err != nil {
			b.Fatal(err)
		}
		it := item
		it.CT = sum
		ev, err := s.eng.Evaluate(st, []Item{it}, []byte("bench"))
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.dec.ShareChecks(s.shares[self], &ev.Checks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(payers*payees*b.N)/b.Elapsed().Seconds(), "payments/s")
}
