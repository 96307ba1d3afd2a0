package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/zkbank/zkbank/internal/wire"
	"sort"
	"strconv"
	"strings"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// BalanceReply is one validator's answer to a balance query: the isolated
// balance ciphertext (identical at every honest validator, since it is a
// deterministic function of the committed state) and this validator's share
// re-encrypting it to the owner's key.
type BalanceReply struct {
	Validator int
	Height    uint64
	Lane      int
	CT        *rlwe.Ciphertext
	Share     *ReencShare
}

// BalanceQueryBytes is what the account owner signs to ask for its balance:
// the signature authorizes re-encryption to exactly ownerPK (bound by hash),
// so validators never re-encrypt an account's balance to anyone else's key.
func BalanceQueryBytes(chain string, account AccountID, q BalanceQuery, ownerPK []byte) []byte {
	var w wire.Writer
	w.Fixed([]byte("zkbank/balance/v2\x00"))
	w.Bytes([]byte(chain))
	w.Fixed(account[:])
	w.U64(q.Height)
	w.U64(q.Expiry)
	w.U64(q.Nonce)
	h := sha256.Sum256(ownerPK)
	w.Fixed(h[:])
	return w.B
}

// BalanceQuery is what a signed balance request commits to besides the
// chain, the account and the owner key: the height to answer at (0: the
// node's latest), the last finalized height at which the request may be
// answered, and a nonce. A validator answers a given request once, and not
// after Expiry, so a captured request is worthless once used or expired.
type BalanceQuery struct {
	Height, Expiry, Nonce uint64
}

// BalanceQueryWindow is how far ahead of a validator's finalized height a
// balance request's expiry may lie (a request cannot be made to last).
const BalanceQueryWindow = 256

// OpenAccountBytes is what a new account's key signs to open it.
func OpenAccountBytes(chain string, kind AccountKind) []byte {
	var w wire.Writer
	w.Fixed([]byte("zkbank/open/v1\x00"))
	w.Bytes([]byte(chain))
	w.U8(uint8(kind))
	return w.B
}

// VerifyBalanceQuery checks an owner's signed balance request.
func VerifyBalanceQuery(pub ed25519.PublicKey, chain string, account AccountID, q BalanceQuery, ownerPK, sig []byte) bool {
	return len(pub) == ed25519.PublicKeySize && AccountIDOf(pub) == account && ed25519.Verify(pub, BalanceQueryBytes(chain, account, q, ownerPK), sig)
}

// MarshalBinary encodes the reply.
func (r *BalanceReply) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(r.Validator))
	w.U64(r.Height)
	w.U32(uint32(r.Lane))
	if err := marshalInto(&w, r.CT); err != nil {
		return nil, err
	}
	sb, err := r.Share.MarshalBinary()
	if err != nil {
		return nil, err
	}
	w.Bytes(sb)
	return w.B, nil
}

// DecodeBalanceReply decodes a reply received from a node.
func (p *Params) DecodeBalanceReply(b []byte) (*BalanceReply, error) {
	r := wire.NewReader(b, ErrMalformed)
	out := &BalanceReply{Validator: int(r.U32()), Height: r.U64(), Lane: int(r.U32())}
	ctb := r.Bytes(maxField)
	sb := r.Bytes(maxField)
	if err := r.Done(); err != nil {
		return nil, err
	}
	out.CT = rlwe.NewCiphertext(p.BGV, 1, LevelDecrypt)
	if err := strictDecode(out.CT, ctb); err != nil || out.CT.Level() != LevelDecrypt || out.CT.Degree() != 1 {
		return nil, fmt.Errorf("%w: balance ciphertext", ErrMalformed)
	}
	sh, err := p.DecodeReencShare(sb)
	if err != nil {
		return nil, err
	}
	if sh.Validator != out.Validator || out.Lane < 0 || out.Lane >= p.Lanes {
		return nil, fmt.Errorf("%w: balance reply fields", ErrMalformed)
	}
	out.Share = sh
	return out, nil
}

// CombineBalance turns validators' replies into the owner's balance,
// decrypted locally with the owner's secret key. Replies are grouped by the
// ciphertext they re-encrypt (a validator cannot make the owner read another
// ciphertext than the one the others computed), and within a group the
// balance is decided as checks are (robust.go): T+F validators whose shares
// decrypt to the same balance in every t-subset, so no f validators, sending
// shares crafted after seeing the others, can change what the owner reads.
func (d *Decryptor) CombineBalance(owner *OwnerKeys, replies []*BalanceReply) (uint64, uint64, error) {
	b, h, err := d.CombineBalances(owner, replies)
	return b.Available, h, err
}

// Balances are an account's two balances as its owner decrypts them.
type Balances struct {
	Available uint64 // what the owner may spend: only its own operations change it
	Pending   uint64 // credits received, waiting for the owner's apply
}

// CombineBalances is CombineBalance for both balances of the ciphertext
// validators re-encrypt (Engine.BalancesFromRecomposed).
func (d *Decryptor) CombineBalances(owner *OwnerKeys, replies []*BalanceReply) (Balances, uint64, error) {
	groups := map[[32]byte][]*BalanceReply{}
	for _, r := range replies {
		if r == nil || r.CT == nil || r.Share == nil || r.Share.Validator != r.Validator {
			continue
		}
		b, err := r.CT.MarshalBinary()
		if err != nil {
			continue
		}
		var key [32]byte
		h := sha256.New()
		h.Write(b)
		var x [12]byte
		binary.BigEndian.PutUint64(x[:8], r.Height)
		binary.BigEndian.PutUint32(x[8:], uint32(r.Lane))
		h.Write(x[:])
		copy(key[:], h.Sum(nil))
		groups[key] = append(groups[key], r)
	}
	keys := make([][32]byte, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(groups[keys[i]]) != len(groups[keys[j]]) {
			return len(groups[keys[i]]) > len(groups[keys[j]])
		}
		return string(keys[i][:]) < string(keys[j][:])
	})
	need := d.com.Agreement()
	var last error = fmt.Errorf("%w: no balance replies", ErrShare)
	for _, k := range keys {
		g := groups[k]
		if len(g) < need {
			last = fmt.Errorf("%w: %d consistent balance replies, need %d (nodes at different heights? retry)", ErrShare, len(g), need)
			break
		}
		byValidator := map[int]*BalanceReply{}
		ids := []int{}
		for _, r := range g {
			if _, dup := byValidator[r.Validator]; !dup && r.Validator >= 0 && r.Validator < d.com.N {
				byValidator[r.Validator] = r
				ids = append(ids, r.Validator)
			}
		}
		ag, err := agree(ids, d.com.T, need, func(sub []int) (string, bool) {
			shares := make([]*ReencShare, len(sub))
			for i, v := range sub {
				shares[i] = byValidator[v].Share
			}
			ct, err := d.CombineReenc(g[0].CT, shares)
			if err != nil {
				return "", false
			}
			a, p, err := d.p.DecryptBalances(owner, ct, g[0].Lane)
			if err != nil {
				return "", false
			}
			return strconv.FormatUint(a, 10) + "/" + strconv.FormatUint(p, 10), true
		})
		if err != nil {
			last = err
			continue
		}
		as, ps, _ := strings.Cut(ag.key, "/")
		a, _ := strconv.ParseUint(as, 10, 64)
		p, _ := strconv.ParseUint(ps, 10, 64)
		return Balances{Available: a, Pending: p}, g[0].Height, nil
	}
	return Balances{}, 0, last
}

// MarshalBinary encodes owner keys for a wallet file (secret: store 0600).
func (k *OwnerKeys) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	if err := marshalInto(&w, k.SK); err != nil {
		return nil, err
	}
	if err := marshalInto(&w, k.PK); err != nil {
		return nil, err
	}
	return w.B, nil
}

// DecodeOwnerKeys decodes a wallet's owner keys.
func (p *Params) DecodeOwnerKeys(b []byte) (*OwnerKeys, error) {
	r := wire.NewReader(b, ErrMalformed)
	k := &OwnerKeys{SK: rlwe.NewSecretKey(p.BGV), PK: rlwe.NewPublicKey(p.BGV)}
	unmarshalFrom(r, k.SK, "owner secret key")
	unmarshalFrom(r, k.PK, "owner public key")
	if err := r.Done(); err != nil {
		return nil, err
	}
	return k, nil
}

// DecodeOwnerPK decodes an owner's public key (as registered with an account).
func (p *Params) DecodeOwnerPK(b []byte) (*rlwe.PublicKey, error) {
	pk := rlwe.NewPublicKey(p.BGV)
	if err := strictDecode(pk, b); err != nil {
		return nil, fmt.Errorf("%w: owner public key: %w", ErrMalformed, err)
	}
	return pk, nil
}

// DecodeCollectiveKey decodes the chain's collective public key.
func (p *Params) DecodeCollectiveKey(b []byte) (*rlwe.PublicKey, error) { return p.DecodeOwnerPK(b) }
