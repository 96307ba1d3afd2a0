package ledger

import (
	"crypto/ed25519"
	"fmt"
	"github.com/zkbank/zkbank/internal/wire"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// Clone returns a copy of the book that can be advanced speculatively (to
// validate a proposal) without touching the original. Ciphertexts are shared:
// the book never mutates a state ciphertext in place.
func (b *Book) Clone() *Book {
	c := *b
	c.byID = make(map[AccountID]*Account, len(b.byID))
	for id, a := range b.byID {
		cp := *a
		cp.cloneLending()
		c.byID[id] = &cp
	}
	c.byLane = make(map[laneKey]AccountID, len(b.byLane))
	for k, v := range b.byLane {
		c.byLane[k] = v
	}
	c.history = make(map[uint32]map[uint64]*rlwe.Ciphertext, len(b.history))
	for s, hs := range b.history {
		m := make(map[uint64]*rlwe.Ciphertext, len(hs))
		for h, ct := range hs {
			m[h] = ct
		}
		c.history[s] = m
	}
	return &c
}

// MarshalBinary encodes an account registry entry.
func (a *Account) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U8(3)
	w.Fixed(a.ID[:])
	w.Bytes(a.SignPub)
	w.Bytes(a.OwnerPK)
	w.U8(uint8(a.Kind))
	w.U32(a.Shard)
	w.U32(uint32(a.Lane))
	w.U64(a.Nonce)
	w.Fixed(a.LastOp[:])
	w.U64(a.LastApply)
	w.U64(a.Created)
	writeLendingAccount(&w, a)
	return w.B, nil
}

// UnmarshalBinary decodes an account registry entry.
func (a *Account) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	v := r.U8()
	if r.Err == nil && v != 2 && v != 3 {
		return fmt.Errorf("%w: account version %d", ErrMalformed, v)
	}
	copy(a.ID[:], r.Fixed(32))
	a.SignPub = ed25519.PublicKey(append([]byte(nil), r.Bytes(maxField)...))
	a.OwnerPK = append([]byte(nil), r.Bytes(maxField)...)
	a.Kind = AccountKind(r.U8())
	a.Shard = r.U32()
	a.Lane = int(r.U32())
	a.Nonce = r.U64()
	copy(a.LastOp[:], r.Fixed(32))
	a.LastApply = r.U64()
	a.Created = r.U64()
	if v == 3 {
		readLendingAccount(r, a)
	}
	if err := r.Done(); err != nil {
		return err
	}
	if len(a.SignPub) != ed25519.PublicKeySize || AccountIDOf(a.SignPub) != a.ID {
		return fmt.Errorf("%w: account key does not match id", ErrMalformed)
	}
	return nil
}

// Snapshot is what a node persists to restart without replaying history:
// the registry, the retained shard states and the applied height.
type Snapshot struct {
	Height   uint64
	Accounts []*Account
	States   map[uint32]map[uint64]*rlwe.Ciphertext
}

// Snapshot captures the book (sharing ciphertexts).
func (b *Book) Snapshot() *Snapshot {
	s := &Snapshot{Height: b.height, Accounts: b.Accounts(), States: map[uint32]map[uint64]*rlwe.Ciphertext{}}
	for sh, hs := range b.history {
		m := map[uint64]*rlwe.Ciphertext{}
		for h, ct := range hs {
			m[h] = ct
		}
		s.States[sh] = m
	}
	return s
}

// RestoreBook rebuilds a book from a snapshot.
func RestoreBook(eng *Engine, chain string, s *Snapshot) (*Book, error) {
	b := &Book{p: eng.p, eng: eng, chain: chain, window: DefaultWindow, height: s.Height,
		byID: map[AccountID]*Account{}, byLane: map[laneKey]AccountID{}, history: map[uint32]map[uint64]*rlwe.Ciphertext{},
		score: DefaultScoreParams}
	for _, a := range s.Accounts {
		cp := *a
		cp.cloneLending()
		if _, dup := b.byID[cp.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate account in snapshot", ErrMalformed)
		}
		b.byID[cp.ID] = &cp
		b.byLane[laneKey{cp.Shard, cp.Lane}] = cp.ID
	}
	for sh, hs := range s.States {
		m := map[uint64]*rlwe.Ciphertext{}
		for h, ct := range hs {
			if ct.Level() != LevelState {
				return nil, fmt.Errorf("%w: state of shard %d at level %d", ErrMalformed, sh, ct.Level())
			}
			m[h] = ct
		}
		b.history[sh] = m
	}
	// A snapshot written before repaid planes existed: every repayment
	// since was zero, so the plane is a zero state at the snapshot's height
	// (the same bytes on every validator).
	for sh := range s.States {
		if IsPendingKey(sh) || IsRepaidKey(sh) {
			continue
		}
		if _, ok := b.history[RepaidKey(sh)]; !ok {
			z, err := eng.trivialState(nil)
			if err != nil {
				return nil, err
			}
			b.history[RepaidKey(sh)] = map[uint64]*rlwe.Ciphertext{s.Height: z}
		}
	}
	return b, nil
}

// StatesAt returns the shard states written at exactly height h (what a node
// persists after committing h).
func (b *Book) StatesAt(h uint64) map[uint32]*rlwe.Ciphertext {
	out := map[uint32]*rlwe.Ciphertext{}
	for s, hs := range b.history {
		if ct, ok := hs[h]; ok {
			out[s] = ct
		}
	}
	return out
}
