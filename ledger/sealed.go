package ledger

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"filippo.io/edwards25519"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
	"github.com/zkbank/zkbank/internal/wire"
)

// Sealed uploads (docs/PROTOCOL.md, "Uploads as sealed shares").
//
// A wallet never produces a ciphertext. It splits the 64 slot values of a
// transfer (32 amount bits, 32 new-balance bits) into additive pieces mod the
// plaintext modulus, one piece per f-subset T of the committee (replicated
// secret sharing), and seals to each validator the pieces it holds: piece T
// goes to every validator outside T. Any f validators miss the piece named
// by their own set, so they learn nothing of the values; every piece has
// N-f >= 2f+1 holders, so f byzantine holders are always outvoted.
//
// Each holder encrypts, for a whole shard batch, the pieces it holds with
// randomness drawn from a PRNG keyed by the batch's piece seeds, which only
// holders know. Honest holders therefore produce bit-identical ciphertexts;
// a piece ciphertext is the one that f+1 holders attest, and a holder that
// attests anything else is named. Every ciphertext that reaches the circuit
// was sampled honestly (ternary u, Gaussian e) by a validator: no client
// chooses a c1 or a noise.

// Sharing is the replicated secret sharing layout of a committee: the
// f-subsets of its N validators in lexicographic order. Piece 0 travels
// explicitly; every other piece is expanded from its seed.
type Sharing struct {
	N, F   int
	pieces [][]int
	held   [][]int // validator -> pieces it holds, ascending
}

// MaxPieces bounds C(N, f): replicated sharing is for a consortium of a
// handful of banks (C(7,2) = 21, C(10,3) = 120).
const MaxPieces = 128

// ErrSealed reports a sealed upload or piece that does not open or does not
// match its commitment.
var ErrSealed = errors.New("ledger: bad sealed share")

// NewSharing lays out replicated sharing for n validators tolerating f.
func NewSharing(n, f int) (*Sharing, error) {
	if n < 1 || f < 0 || 3*f >= n {
		return nil, fmt.Errorf("%w: sharing needs n >= 3f+1 (n=%d f=%d)", ErrParams, n, f)
	}
	s := &Sharing{N: n, F: f, held: make([][]int, n)}
	Subsets(n, f, func(idx []int) {
		s.pieces = append(s.pieces, append([]int(nil), idx...))
	})
	if f == 0 {
		s.pieces = [][]int{{}}
	}
	if len(s.pieces) > MaxPieces {
		return nil, fmt.Errorf("%w: %d pieces for n=%d f=%d (at most %d)", ErrParams, len(s.pieces), n, f, MaxPieces)
	}
	for k := range s.pieces {
		for v := 0; v < n; v++ {
			if s.Holds(v, k) {
				s.held[v] = append(s.held[v], k)
			}
		}
	}
	return s, nil
}

// Pieces is the number of pieces a value is split into.
func (s *Sharing) Pieces() int { return len(s.pieces) }

// Missing returns the validators that do not hold piece k (its f-subset).
func (s *Sharing) Missing(k int) []int { return s.pieces[k] }

// Holds reports whether validator v holds piece k (v is not in its subset).
func (s *Sharing) Holds(v, k int) bool {
	for _, x := range s.pieces[k] {
		if x == v {
			return false
		}
	}
	return true
}

// Holders returns the validators holding piece k, ascending.
func (s *Sharing) Holders(k int) []int {
	var out []int
	for v := 0; v < s.N; v++ {
		if s.Holds(v, k) {
			out = append(out, v)
		}
	}
	return out
}

// Held returns the pieces validator v holds, ascending.
func (s *Sharing) Held(v int) []int { return s.held[v] }

// SlotValues is the number of plaintext values a transfer contributes: the
// 32 amount bits (row 0) and the 32 new-balance bits (row 1) of its lane.
const SlotValues = 2 * AmountBits

// TransferValues returns the slot values of a transfer as the circuit reads
// them (EncodeLanes): value index row*AmountBits + j holds 2^j * bit j of the
// amount (row 0) or of the new balance (row 1).
func TransferValues(amount, newBalance uint64) []uint64 {
	v := make([]uint64, SlotValues)
	for j := 0; j < AmountBits; j++ {
		v[j] = (amount >> j & 1) << j
		v[AmountBits+j] = (newBalance >> j & 1) << j
	}
	return v
}

// Piece is one additive piece of a transfer's slot values and the seed that
// keys its share of the batch encryption randomness.
type Piece struct {
	Values []uint64 // SlotValues values mod the plaintext modulus
	Seed   [32]byte
}

// commit is the public commitment to a piece: hiding (the seed is 256 random
// bits) and binding (SHA-256).
func (pc *Piece) commit(k int) [32]byte {
	h := sha256.New()
	h.Write([]byte("zkbank/piece-commit/v1\x00"))
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], uint32(k))
	h.Write(b[:4])
	for _, v := range pc.Values {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	h.Write(pc.Seed[:])
	var c [32]byte
	h.Sum(c[:0])
	return c
}

// MaxValues bounds the slot values of one upload (a pay-many to MaxPayees).
const MaxValues = SlotValues * (1 + MaxPayees)

// validCount reports whether n slot values are a whole number of lanes
// within MaxValues.
func validCount(n int) bool { return n >= SlotValues && n <= MaxValues && n%SlotValues == 0 }

// expandPiece derives a seeded piece's n values (uniform mod t).
func expandPiece(t uint64, k int, seed [32]byte, n int) ([]uint64, error) {
	h := sha256.New()
	h.Write([]byte("zkbank/piece-values/v1\x00"))
	var kb [4]byte
	binary.BigEndian.PutUint32(kb[:], uint32(k))
	h.Write(kb[:])
	h.Write(seed[:])
	prng, err := sampling.NewKeyedPRNG(h.Sum(nil))
	if err != nil {
		return nil, err
	}
	out := make([]uint64, n)
	mask := uint64(1)<<valueBits(t) - 1
	var b [8]byte
	for i := range out {
		for {
			if _, err := prng.Read(b[:]); err != nil {
				return nil, err
			}
			if v := binary.BigEndian.Uint64(b[:]) & mask; v < t {
				out[i] = v
				break
			}
		}
	}
	return out, nil
}

func valueBits(t uint64) int {
	n := 0
	for (t-1)>>n != 0 {
		n++
	}
	return n
}

// valueBytes is how many bytes an explicit value takes on the wire.
func valueBytes(t uint64) int { return (valueBits(t) + 7) / 8 }

// SealKeyFromSeed derives a validator's sealing key (X25519) from its ed25519
// consensus seed: the ed25519 secret scalar, so the public sealing key is the
// Montgomery form of the consensus public key (SealPublicKey) and genesis
// needs no new field.
func SealKeyFromSeed(seed []byte) (*ecdh.PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: ed25519 seed of %d bytes", ErrParams, len(seed))
	}
	h := sha512.Sum512(seed)
	return ecdh.X25519().NewPrivateKey(h[:32])
}

// SealPublicKey converts a validator's ed25519 consensus key to the X25519
// key its sealed shares are sealed to.
func SealPublicKey(pub ed25519.PublicKey) (*ecdh.PublicKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: ed25519 key of %d bytes", ErrParams, len(pub))
	}
	pt, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: ed25519 key: %w", ErrParams, err)
	}
	return ecdh.X25519().NewPublicKey(pt.BytesMontgomery())
}

// SealBinding is what a sealed box is bound to: a box opens only under the
// envelope it was dealt for (same chain, sender and nonce) and for the
// commitments it was dealt with, so a copied box is worthless.
type SealBinding struct {
	Chain string
	From  AccountID
	Nonce uint64
	// Values is how many slot values the upload deals (Envelope.ValueCount);
	// zero means one lane's SlotValues.
	Values int
}

func (b SealBinding) values() int {
	if b.Values == 0 {
		return SlotValues
	}
	return b.Values
}

func (b SealBinding) info(validator int, commits [][32]byte) []byte {
	var w wire.Writer
	w.Fixed([]byte("zkbank/seal/v1\x00"))
	w.Bytes([]byte(b.Chain))
	w.Fixed(b.From[:])
	w.U64(b.Nonce)
	w.U32(uint32(b.values()))
	w.U32(uint32(validator))
	h := sha256.New()
	for _, c := range commits {
		h.Write(c[:])
	}
	w.Fixed(h.Sum(nil))
	return w.B
}

var (
	sealKDF  = hpke.HKDFSHA256()
	sealAEAD = hpke.ChaCha20Poly1305()
)

// SealedTransfer is a wallet's upload for one transfer: a commitment per
// piece and one box per validator (HPKE, DHKEM(X25519) + HKDF-SHA256 +
// ChaCha20-Poly1305) holding the pieces that validator holds.
type SealedTransfer struct {
	Commits [][32]byte // one per piece
	Boxes   [][]byte   // one per validator
}

const sealedVersion = 2 // 2: pay-many (a value count per piece, bound in the seal)

// maxBox bounds one box on the wire (the explicit piece plus every seed).
const maxBox = 64 + MaxPieces*(4+32) + MaxValues*8 + 64

// MarshalBinary encodes the sealed transfer.
func (s *SealedTransfer) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U8(sealedVersion)
	w.U32(uint32(len(s.Commits)))
	for _, c := range s.Commits {
		w.Fixed(c[:])
	}
	w.U32(uint32(len(s.Boxes)))
	for _, b := range s.Boxes {
		w.Bytes(b)
	}
	return w.B, nil
}

// UnmarshalBinary decodes a sealed transfer (not the boxes inside).
func (s *SealedTransfer) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	if v := r.U8(); r.Err == nil && v != sealedVersion {
		return fmt.Errorf("%w: sealed transfer version %d", ErrMalformed, v)
	}
	n := r.Count(MaxPieces)
	s.Commits = make([][32]byte, 0, n)
	for i := 0; i < n && r.Err == nil; i++ {
		var c [32]byte
		copy(c[:], r.Fixed(32))
		s.Commits = append(s.Commits, c)
	}
	m := r.Count(MaxPieces)
	s.Boxes = make([][]byte, 0, m)
	for i := 0; i < m && r.Err == nil; i++ {
		s.Boxes = append(s.Boxes, append([]byte(nil), r.Bytes(maxBox)...))
	}
	if err := r.Done(); err != nil {
		return err
	}
	if n == 0 || m == 0 {
		return fmt.Errorf("%w: sealed transfer without pieces or boxes", ErrMalformed)
	}
	return nil
}

// Digest is the hash a transfer's envelope signs (Envelope.CTHash).
func (s *SealedTransfer) Digest() [32]byte {
	b, _ := s.MarshalBinary()
	return sha256.Sum256(b)
}

// Deal splits a transfer's slot values into pieces and seals them to the
// committee (sealKeys[i] is validator i's key, SealPublicKey). rnd supplies
// the seeds (crypto/rand.Reader in a wallet).
func (p *Params) Deal(sh *Sharing, sealKeys []*ecdh.PublicKey, bind SealBinding, values []uint64, rnd io.Reader) (*SealedTransfer, error) {
	if len(sealKeys) != sh.N {
		return nil, fmt.Errorf("%w: %d sealing keys for %d validators", ErrParams, len(sealKeys), sh.N)
	}
	if len(values) != bind.values() || !validCount(len(values)) {
		return nil, fmt.Errorf("%w: %d slot values (the binding says %d)", ErrParams, len(values), bind.values())
	}
	t := p.BGV.PlaintextModulus()
	pieces := make([]Piece, sh.Pieces())
	explicit := make([]uint64, len(values))
	for i, v := range values {
		explicit[i] = v % t
	}
	for k := range pieces {
		if _, err := io.ReadFull(rnd, pieces[k].Seed[:]); err != nil {
			return nil, fmt.Errorf("ledger: dealing: %w", err)
		}
		if k == 0 {
			continue
		}
		vals, err := expandPiece(t, k, pieces[k].Seed, len(values))
		if err != nil {
			return nil, err
		}
		pieces[k].Values = vals
		for i, v := range vals {
			explicit[i] = (explicit[i] + t - v) % t
		}
	}
	pieces[0].Values = explicit
	st := &SealedTransfer{Commits: make([][32]byte, len(pieces))}
	for k := range pieces {
		st.Commits[k] = pieces[k].commit(k)
	}
	vb := valueBytes(t)
	for v := 0; v < sh.N; v++ {
		var w wire.Writer
		w.U8(sealedVersion)
		for _, k := range sh.Held(v) {
			w.U32(uint32(k))
			w.Fixed(pieces[k].Seed[:])
			if k == 0 {
				for _, x := range pieces[0].Values {
					var b [8]byte
					binary.BigEndian.PutUint64(b[:], x)
					w.Fixed(b[8-vb:])
				}
			}
		}
		pk, err := hpke.NewDHKEMPublicKey(sealKeys[v])
		if err != nil {
			return nil, fmt.Errorf("ledger: sealing key %d: %w", v, err)
		}
		box, err := hpke.Seal(pk, sealKDF, sealAEAD, bind.info(v, st.Commits), w.B)
		if err != nil {
			return nil, fmt.Errorf("ledger: sealing to %d: %w", v, err)
		}
		st.Boxes = append(st.Boxes, box)
	}
	return st, nil
}

// Open opens validator self's box and returns the pieces it holds, by piece
// index, each checked against its public commitment. Any failure (wrong box
// count, a box that does not open under this binding, a piece that does not
// match its commitment) is ErrSealed: the dealer's fault, never the
// validator's.
func (p *Params) Open(sh *Sharing, self int, key *ecdh.PrivateKey, bind SealBinding, st *SealedTransfer) (map[int]*Piece, error) {
	if len(st.Commits) != sh.Pieces() || len(st.Boxes) != sh.N || self < 0 || self >= sh.N {
		return nil, fmt.Errorf("%w: %d commitments and %d boxes for %d pieces and %d validators", ErrSealed, len(st.Commits), len(st.Boxes), sh.Pieces(), sh.N)
	}
	sk, err := hpke.NewDHKEMPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ledger: sealing key: %w", err)
	}
	pt, err := hpke.Open(sk, sealKDF, sealAEAD, bind.info(self, st.Commits), st.Boxes[self])
	if err != nil {
		return nil, fmt.Errorf("%w: box does not open: %w", ErrSealed, err)
	}
	t := p.BGV.PlaintextModulus()
	vb := valueBytes(t)
	n := bind.values()
	if !validCount(n) {
		return nil, fmt.Errorf("%w: %d slot values", ErrSealed, n)
	}
	r := wire.NewReader(pt, ErrSealed)
	if v := r.U8(); r.Err == nil && v != sealedVersion {
		return nil, fmt.Errorf("%w: box version %d", ErrSealed, v)
	}
	out := map[int]*Piece{}
	for _, k := range sh.Held(self) {
		if got := r.U32(); r.Err == nil && int(got) != k {
			return nil, fmt.Errorf("%w: box names piece %d where %d belongs", ErrSealed, got, k)
		}
		pc := &Piece{}
		copy(pc.Seed[:], r.Fixed(32))
		if r.Err != nil {
			break
		}
		if k == 0 {
			pc.Values = make([]uint64, n)
			for i := range pc.Values {
				var b [8]byte
				copy(b[8-vb:], r.Fixed(vb))
				pc.Values[i] = binary.BigEndian.Uint64(b[:])
				if pc.Values[i] >= t {
					return nil, fmt.Errorf("%w: piece value not reduced", ErrSealed)
				}
			}
		} else if pc.Values, err = expandPiece(t, k, pc.Seed, n); err != nil {
			return nil, err
		}
		if r.Err == nil && pc.commit(k) != st.Commits[k] {
			return nil, fmt.Errorf("%w: piece %d does not match its commitment", ErrSealed, k)
		}
		out[k] = pc
	}
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealed, err)
	}
	return out, nil
}

// VerifyPiece checks a piece received from another holder (when this
// validator's own box did not open) against the dealer's commitment.
func (p *Params) VerifyPiece(st *SealedTransfer, k int, pc *Piece) error {
	if k < 0 || k >= len(st.Commits) || !validCount(len(pc.Values)) {
		return fmt.Errorf("%w: piece %d", ErrSealed, k)
	}
	t := p.BGV.PlaintextModulus()
	for _, v := range pc.Values {
		if v >= t {
			return fmt.Errorf("%w: piece value not reduced", ErrSealed)
		}
	}
	if k != 0 {
		// A seeded piece is its seed's expansion, as Open computes it: a
		// piece Open would refuse is refused here too.
		want, err := expandPiece(t, k, pc.Seed, len(pc.Values))
		if err != nil {
			return err
		}
		for i, v := range want {
			if pc.Values[i] != v {
				return fmt.Errorf("%w: piece %d is not its seed's expansion", ErrSealed, k)
			}
		}
	}
	if pc.commit(k) != st.Commits[k] {
		return fmt.Errorf("%w: piece %d does not match its commitment", ErrSealed, k)
	}
	return nil
}

// LanePiece is one transfer's piece placed in its sender's lane of a batch.
// A pay-many's piece also fills Subs, one lane of the batch per payee
// (free lanes the chain's layout lends it): see placePiece.
type LanePiece struct {
	Lane  int
	Piece *Piece
	Subs  []int
	// AtLeast makes the lane a threshold check "plane >= Min" rather than a
	// payment (the decision-only answer lending needs, atleast.go): row 0
	// is not the dealer's but the public Min, written by the holders of
	// piece 0 (First) and zero in every other piece; row 1 is the dealer's
	// bits of plane - Min.
	AtLeast bool
	Min     uint64
	First   bool
}

// placePiece writes one transfer's piece into a batch's slot vector and
// marks the lanes it takes in used.
//
// A single transfer (or an apply) fills its lane with its 64 values: amount
// bits in row 0, new-balance bits in row 1.
//
// A pay-many's piece holds one lane of values for the payer and one per
// payee. Payee i's lane Subs[i] gets the piece of its amount bits (row 0;
// row 1 stays zero: the circuit checks only row 0 there). The payer's lane
// gets its new-balance bits in row 1 and, in row 0 slot 0, the holder's
// piece of the total: the sum of its pieces of every payee's amount slots.
// The dealer's own row 0 for the payer is ignored, so the amount debited
// and checked against the balance is, by construction, the sum of the
// amounts credited (docs/PROTOCOL.md, "Pay many").
func (p *Params) placePiece(vals []uint64, lp LanePiece, used map[int]bool) error {
	n := 0
	if lp.Piece != nil {
		n = len(lp.Piece.Values)
	}
	lanes := append([]int{lp.Lane}, lp.Subs...)
	if lp.Piece == nil || n != ValuesFor(len(lp.Subs)) || len(lp.Subs) == 1 {
		return fmt.Errorf("%w: piece for lane %d", ErrBatch, lp.Lane)
	}
	for _, l := range lanes {
		if l < 0 || l >= p.Lanes || used[l] {
			return fmt.Errorf("%w: piece for lane %d", ErrBatch, l)
		}
		used[l] = true
	}
	v := lp.Piece.Values
	if lp.AtLeast {
		if len(lp.Subs) > 0 || lp.Min > MaxAmount {
			return fmt.Errorf("%w: threshold check for lane %d", ErrBatch, lp.Lane)
		}
		if lp.First {
			vals[p.Slot(0, 0, lp.Lane)] = lp.Min
		}
		for j := 0; j < p.Bits; j++ {
			vals[p.Slot(1, j, lp.Lane)] = v[p.Bits+j]
		}
		return nil
	}
	if len(lp.Subs) == 0 {
		for row := 0; row < p.Rows; row++ {
			for j := 0; j < p.Bits; j++ {
				vals[p.Slot(row, j, lp.Lane)] = v[row*p.Bits+j]
			}
		}
		return nil
	}
	t := p.BGV.PlaintextModulus()
	var total uint64
	for i, l := range lp.Subs {
		for j := 0; j < p.Bits; j++ {
			x := v[(i+1)*SlotValues+j] % t
			vals[p.Slot(0, j, l)] = x
			total = (total + x) % t
		}
	}
	vals[p.Slot(0, 0, lp.Lane)] = total
	for j := 0; j < p.Bits; j++ {
		vals[p.Slot(1, j, lp.Lane)] = v[p.Bits+j]
	}
	return nil
}

// PieceBatchSeed keys the randomness of piece k's ciphertext for one shard
// batch: the domain, the batch's identity, and the seeds of every piece
// placed in it in lane order. Only holders of piece k know those seeds, so
// the validators missing piece k (f of them) cannot strip the encryption.
func PieceBatchSeed(chain string, height uint64, shard uint32, k int, lanes []LanePiece) [32]byte {
	return batchSeed("zkbank/piece-batch/v1\x00", chain, height, shard, k, len(lanes), func(i int, b []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(lanes[i].Lane))
		b = binary.BigEndian.AppendUint32(b, uint32(len(lanes[i].Subs)))
		for _, l := range lanes[i].Subs {
			b = binary.BigEndian.AppendUint32(b, uint32(l))
		}
		return append(b, lanes[i].Piece.Seed[:]...)
	})
}

// batchSeed hashes a domain, a batch's identity and each of its n items
// (item appends item i's bytes to b): the key of a batch encryption's
// randomness.
func batchSeed(domain, chain string, height uint64, index uint32, k, n int, item func(i int, b []byte) []byte) [32]byte {
	h := sha256.New()
	var w wire.Writer
	w.Fixed([]byte(domain))
	w.Bytes([]byte(chain))
	w.U64(height)
	w.U32(index)
	w.U32(uint32(k))
	w.U32(uint32(n))
	h.Write(w.B)
	buf := make([]byte, 0, 64)
	for i := 0; i < n; i++ {
		h.Write(item(i, buf[:0]))
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// EncryptPieceBatch encrypts one piece of every transfer of a shard batch
// (each at its lane's slots, zero elsewhere) under the collective public key
// at LevelUpload, with all randomness (u ternary, e0 and e1 Gaussian, from
// Lattigo's own distributions) drawn from a PRNG keyed by seed: two honest
// holders produce the same bytes. The encryption is Lattigo's public-key
// encryption over QP followed by the division by P, as rlwe.Encryptor does,
// so the noise is that of any honest fresh ciphertext.
func (p *Params) EncryptPieceBatch(pk *rlwe.PublicKey, lanes []LanePiece, seed [32]byte) (*rlwe.Ciphertext, error) {
	return p.EncryptPieceBatchWithCredits(pk, lanes, nil, seed)
}

// EncryptPieceBatchWithCredits is EncryptPieceBatch that also places the
// group's layer-0 credits (credit.go) in lanes no transfer of the batch
// occupies: the checks and the debit never see them (isolation masks every
// lane but the senders'), and CreditDeltas reads them from the same
// ciphertext.
func (p *Params) EncryptPieceBatchWithCredits(pk *rlwe.PublicKey, lanes []LanePiece, credits []LaneCredit, seed [32]byte) (*rlwe.Ciphertext, error) {
	vals := make([]uint64, p.Slots)
	used := map[int]bool{}
	for _, lp := range lanes {
		if err := p.placePiece(vals, lp, used); err != nil {
			return nil, err
		}
	}
	if err := p.placeCredits(vals, credits, used); err != nil {
		return nil, err
	}
	return p.encryptSlots(pk, vals, seed)
}

// encryptSlots encrypts a slot vector at LevelUpload with all randomness
// drawn from a PRNG keyed by seed (EncryptPieceBatch, EncryptCreditBatch).
func (p *Params) encryptSlots(pk *rlwe.PublicKey, vals []uint64, seed [32]byte) (*rlwe.Ciphertext, error) {
	tools, _ := p.pieceTools.Get().(*pieceTools)
	if tools == nil {
		rp := p.BGV.GetRLWEParameters()
		tools = &pieceTools{ecd: newEncoder(p), be: ring.NewBasisExtender(rp.RingQ(), rp.RingP())}
	}
	defer p.pieceTools.Put(tools)
	pt := bgv.NewPlaintext(p.BGV, LevelUpload)
	pt.Scale = p.BGV.NewScale(1)
	if err := tools.ecd.Encode(vals, pt); err != nil {
		return nil, fmt.Errorf("ledger: encoding piece batch: %w", err)
	}
	prng, err := sampling.NewKeyedPRNG(seed[:])
	if err != nil {
		return nil, err
	}
	rp := p.BGV.GetRLWEParameters()
	xs, err := ring.NewSampler(prng, rp.RingQ(), rp.Xs(), false)
	if err != nil {
		return nil, err
	}
	xe, err := ring.NewSampler(prng, rp.RingQ(), rp.Xe(), false)
	if err != nil {
		return nil, err
	}
	levelQ, levelP := LevelUpload, rp.MaxLevelP()
	rqp := rp.RingQP().AtLevel(levelQ, levelP)
	be := tools.be

	ct := bgv.NewCiphertext(p.BGV, 1, levelQ)
	c := [2]ringqp.Poly{rqp.NewPoly(), rqp.NewPoly()}
	u := rqp.NewPoly()
	xs.AtLevel(levelQ).Read(u.Q)
	rqp.ExtendBasisSmallNormAndCenter(u.Q, levelP, u.Q, u.P)
	rqp.NTT(u, u)
	rqp.MulCoeffsMontgomery(u, pk.Value[0], c[0])
	rqp.MulCoeffsMontgomery(u, pk.Value[1], c[1])
	rqp.INTT(c[0], c[0])
	rqp.INTT(c[1], c[1])
	e := rqp.NewPoly()
	for i := 0; i < 2; i++ {
		xe.AtLevel(levelQ).Read(e.Q)
		rqp.ExtendBasisSmallNormAndCenter(e.Q, levelP, e.Q, e.P)
		rqp.Add(c[i], e, c[i])
		be.ModDownQPtoQ(levelQ, levelP, c[i].Q, c[i].P, ct.Value[i])
		rqp.RingQ.NTT(ct.Value[i], ct.Value[i])
	}
	rqp.RingQ.Add(ct.Value[0], pt.Value, ct.Value[0])
	ct.IsNTT = true
	ct.Scale = p.BGV.NewScale(1)
	return ct, nil
}

// pieceTools are the stateful helpers EncryptPieceBatch reuses (building
// them costs about 3 ms, a sixth of an encryption); a sync.Pool keeps one
// per concurrent caller.
type pieceTools struct {
	ecd *bgv.Encoder
	be  *ring.BasisExtender
}

// PieceHash is what a holder attests for a piece ciphertext.
func PieceHash(ct *rlwe.Ciphertext) ([32]byte, error) {
	b, err := ct.MarshalBinary()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// ErrNoPieceMajority reports a piece that f+1 holders did not attest alike.
var ErrNoPieceMajority = errors.New("ledger: no f+1 holders agree on a piece")

// DecidePiece picks the piece ciphertext hash that at least f+1 of its
// holders attested (attests maps validator -> hash; validators not holding
// the piece are ignored). Honest holders compute identical bytes from the
// committed pieces, so a holder attesting another hash is faulty: it is
// named. A holder that attested nothing (its box did not open) is not.
func (sh *Sharing) DecidePiece(k int, attests map[int][32]byte) (hash [32]byte, faulty []int, err error) {
	count := map[[32]byte]int{}
	for v, h := range attests {
		if sh.Holds(v, k) {
			count[h]++
		}
	}
	found := false
	for h, c := range count {
		if c >= sh.F+1 {
			if found && h != hash {
				// Two hashes with f+1 holders each: more than f holders lie.
				return [32]byte{}, nil, fmt.Errorf("%w: two hashes each attested by f+1 holders of piece %d", ErrNoPieceMajority, k)
			}
			hash, found = h, true
		}
	}
	if !found {
		return [32]byte{}, nil, fmt.Errorf("%w: piece %d", ErrNoPieceMajority, k)
	}
	for _, v := range sh.Holders(k) {
		if h, ok := attests[v]; ok && h != hash {
			faulty = append(faulty, v)
		}
	}
	return hash, faulty, nil
}

// SumPieces adds the decided piece ciphertexts of a batch into the batch
// ciphertext the circuit evaluates (an upload-level ciphertext holding every
// transfer of the batch in its lane).
func (p *Params) SumPieces(cts []*rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	if len(cts) == 0 {
		return nil, fmt.Errorf("%w: no pieces", ErrBatch)
	}
	rq := p.BGV.RingQ().AtLevel(LevelUpload)
	out := bgv.NewCiphertext(p.BGV, 1, LevelUpload)
	for _, ct := range cts {
		if ct == nil || ct.Degree() != 1 || ct.Level() != LevelUpload {
			return nil, fmt.Errorf("%w: piece ciphertext shape", ErrBatch)
		}
		for i := 0; i < 2; i++ {
			rq.Add(out.Value[i], ct.Value[i], out.Value[i])
		}
	}
	out.IsNTT = true
	out.Scale = p.BGV.NewScale(1)
	return out, nil
}

// MarshalPieces encodes pieces (a holder sending a co-holder the pieces its
// box should have held), ascending by index.
func MarshalPieces(ps map[int]*Piece) []byte {
	ks := make([]int, 0, len(ps))
	for k := range ps {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	var w wire.Writer
	w.U8(sealedVersion)
	w.U32(uint32(len(ks)))
	for _, k := range ks {
		w.U32(uint32(k))
		w.Fixed(ps[k].Seed[:])
		w.U32(uint32(len(ps[k].Values)))
		for _, v := range ps[k].Values {
			w.U64(v)
		}
	}
	return w.B
}

// UnmarshalPieces decodes pieces received from a co-holder. The caller
// checks each against the upload's commitments (VerifyPiece) before use.
func (p *Params) UnmarshalPieces(b []byte) (map[int]*Piece, error) {
	r := wire.NewReader(b, ErrMalformed)
	if v := r.U8(); r.Err == nil && v != sealedVersion {
		return nil, fmt.Errorf("%w: pieces version %d", ErrMalformed, v)
	}
	n := r.Count(MaxPieces)
	t := p.BGV.PlaintextModulus()
	out := map[int]*Piece{}
	prev := -1
	for i := 0; i < n && r.Err == nil; i++ {
		k := int(r.U32())
		pc := &Piece{}
		copy(pc.Seed[:], r.Fixed(32))
		nv := r.Count(MaxValues)
		if r.Err == nil && !validCount(nv) {
			return nil, fmt.Errorf("%w: %d piece values", ErrMalformed, nv)
		}
		pc.Values = make([]uint64, nv)
		for j := range pc.Values {
			pc.Values[j] = r.U64()
			if r.Err == nil && pc.Values[j] >= t {
				return nil, fmt.Errorf("%w: piece value not reduced", ErrMalformed)
			}
		}
		if r.Err == nil && (k <= prev || k >= MaxPieces) {
			return nil, fmt.Errorf("%w: piece index %d after %d", ErrMalformed, k, prev)
		}
		prev = k
		out[k] = pc
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return out, nil
}
