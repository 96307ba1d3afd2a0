package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
)

// Key ceremony over the network: the verified ceremony of
// ledger/ceremony_verify.go (docs/PROTOCOL.md, "Verified key ceremony").
// Public messages go to every other validator; each signed Shamir deal goes
// only to its recipient, over the authenticated and encrypted libp2p stream
// to that recipient's peer id. A node accepts a message only from the peer id
// genesis assigns to the claimed sender, and keeps the first message of each
// kind from each sender.
//
//	key      ceremony signing key (the consensus key when runCeremony is given
//	         withConsensusKeys, else a fresh key bound by the transcript)
//	round 1  Round1 to all; a signed deal to each recipient
//	round 2  Round2 to all, only after every deal was accepted
//	check    each party's check values and joint-test decryption share
//	verdict  what it judged (digest of all checks), and the signed deals it
//	         holds from every dealer whose values failed
//	done     hash of the aggregated keys; all must agree
//
// A wrong deal fails the ceremony with a *ledger.CeremonyFault naming the
// dealer (or the lying recipient); the node then exits with that error and
// writes no key share.

var protoCeremony = p2p.ProtocolID("ceremony", 2)

const (
	msgRound1  byte = 1
	msgDeal    byte = 2 // a ledger.SignedDeal
	msgRound2  byte = 3
	msgDone    byte = 4
	msgKey     byte = 5 // the sender's ed25519 ceremony signing key
	msgCheck   byte = 6 // a ledger.CeremonyCheck
	msgVerdict byte = 7 // a ledger.CeremonyReveal
)

// revealWait bounds how long a node whose checks failed waits for the other
// verdicts before naming whoever it can.
const revealWait = 2 * time.Minute

// ceremonyConfig holds runCeremony's options.
type ceremonyConfig struct {
	priv ed25519.PrivateKey
	pubs []ed25519.PublicKey // nil: learn each validator's key from its msgKey
}

// ceremonyOption configures runCeremony.
type ceremonyOption func(*ceremonyConfig)

// withConsensusKeys signs deals with this validator's consensus key and
// checks every validator's deals against its consensus key in genesis, so a
// signed wrong deal is evidence anyone holding genesis can check. Without it
// each node signs with a fresh key that it announces over its authenticated
// stream and that the transcript binds (evidence only to the participants).
func withConsensusKeys(priv ed25519.PrivateKey, gen *genesis.Genesis) (ceremonyOption, error) {
	pubs := make([]ed25519.PublicKey, len(gen.Validators))
	for i, v := range gen.Validators {
		pk, err := v.PublicKey()
		if err != nil {
			return nil, err
		}
		pubs[i] = pk
	}
	return func(c *ceremonyConfig) { c.priv, c.pubs = priv, pubs }, nil
}

type ceremonyInbox struct {
	inbox
	keys    map[int]ed25519.PublicKey
	r1      map[int]*ledger.Round1
	r2      map[int]*ledger.Round2
	deals   map[int]*ledger.SignedDeal
	checks  map[int]*ledger.CeremonyCheck
	reveals map[int]*ledger.CeremonyReveal
	done    map[int][32]byte
	equiv   *ledger.CeremonyFault // a dealer that signed two different deals for us
}

// missing lists the validators absent from have.
func missing[T any](n int, have map[int]T) []int {
	var out []int
	for i := 0; i < n; i++ {
		if _, ok := have[i]; !ok {
			out = append(out, i)
		}
	}
	return out
}

// runCeremony produces this validator's key share and the public keys.
func runCeremony(ctx context.Context, host *p2p.Host, p *ledger.Params, com *ledger.Committee, self int, peers []peer.ID, seed []byte, log *slog.Logger, opts ...ceremonyOption) (*ledger.PublicKeys, *ledger.KeyShare, error) {
	var cfg ceremonyConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.priv == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		cfg.priv = priv
	}
	myPub := cfg.priv.Public().(ed25519.PublicKey)
	if cfg.pubs != nil && (len(cfg.pubs) != com.N || !myPub.Equal(cfg.pubs[self])) {
		return nil, nil, fmt.Errorf("ceremony: this node's signing key is not validator %d's", self)
	}
	fault := ceremonyFaultsByPeer.get(host.ID())

	index := map[peer.ID]int{}
	for i, id := range peers {
		index[id] = i
	}
	in := &ceremonyInbox{
		keys: map[int]ed25519.PublicKey{}, r1: map[int]*ledger.Round1{}, r2: map[int]*ledger.Round2{},
		deals: map[int]*ledger.SignedDeal{}, checks: map[int]*ledger.CeremonyCheck{},
		reveals: map[int]*ledger.CeremonyReveal{}, done: map[int][32]byte{}, inbox: newInbox(),
	}
	// verify checks a signature against the announced (or genesis) key.
	verify := func(party int, msg, sig []byte) bool {
		in.mu.Lock()
		pk := in.keys[party]
		in.mu.Unlock()
		return len(pk) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize && ed25519.Verify(pk, msg, sig)
	}
	err := host.SetHandler(protoCeremony, func(_ context.Context, from peer.ID, payload []byte) ([]byte, error) {
		i, ok := index[from]
		if !ok || len(payload) < 1 {
			return nil, errors.New("not a validator of this chain")
		}
		kind, body := payload[0], payload[1:]
		// Decode (the expensive part) outside the lock.
		switch kind {
		case msgKey:
			if len(body) != ed25519.PublicKeySize {
				return nil, errors.New("bad ceremony key")
			}
			pk := ed25519.PublicKey(append([]byte(nil), body...))
			if cfg.pubs != nil && !pk.Equal(cfg.pubs[i]) {
				return nil, errors.New("ceremony key is not the sender's consensus key")
			}
			in.mu.Lock()
			defer in.mu.Unlock()
			if old, ok := in.keys[i]; ok && !old.Equal(pk) {
				return nil, errors.New("ceremony key already announced")
			}
			in.keys[i] = pk
		case msgRound1:
			var m ledger.Round1
			if err := m.UnmarshalBinary(body); err != nil || m.From != i {
				return nil, errors.New("bad round-1 message")
			}
			keepFirst(&in.mu, in.r1, i, &m)
		case msgDeal:
			sd, err := p.DecodeSignedDeal(body)
			if err != nil || sd.Deal.From != i || sd.Deal.To != self {
				return nil, errors.New("bad deal")
			}
			msg, err := ledger.DealSigningBytes(seed, i, self, sd.Deal)
			if err != nil || !verify(i, msg, sd.Sig) {
				return nil, errors.New("deal signature does not verify")
			}
			in.mu.Lock()
			defer in.mu.Unlock()
			if old, ok := in.deals[i]; ok {
				if !old.Deal.Share.Equal(&sd.Deal.Share.Poly) && in.equiv == nil {
					in.equiv = &ledger.CeremonyFault{Dealer: i, Recipient: -1, Reason: fmt.Sprintf("signed two different deals for validator %d", self)}
				}
			} else {
				in.deals[i] = sd
			}
		case msgRound2:
			var m ledger.Round2
			if err := m.UnmarshalBinary(body); err != nil || m.From != i {
				return nil, errors.New("bad round-2 message")
			}
			keepFirst(&in.mu, in.r2, i, &m)
		case msgCheck:
			c, err := p.DecodeCeremonyCheck(body)
			if err != nil || c.From != i {
				return nil, errors.New("bad check message")
			}
			keepFirst(&in.mu, in.checks, i, c)
		case msgVerdict:
			v, err := p.DecodeCeremonyReveal(body)
			if err != nil || v.From != i {
				return nil, errors.New("bad verdict message")
			}
			keepFirst(&in.mu, in.reveals, i, v)
		case msgDone:
			if len(body) != 32 {
				return nil, errors.New("bad done message")
			}
			var h [32]byte
			copy(h[:], body)
			in.mu.Lock()
			defer in.mu.Unlock()
			in.done[i] = h
		default:
			return nil, errors.New("unknown ceremony message")
		}
		in.poke()
		return []byte{1}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	defer host.RemoveHandler(protoCeremony)

	sendAll := func(kind byte, body []byte) error {
		return broadcast(ctx, host, protoCeremony, peers, self, kind, body)
	}
	// wait blocks until have() reports all N, the context ends, or (with a
	// non-zero limit) limit passes; it names the validators still missing.
	wait := func(what string, limit time.Duration, have func() []int) error {
		return in.wait(ctx, "ceremony: waiting for "+what+": missing from validators", limit, have)
	}
	fail := func(err error) (*ledger.PublicKeys, *ledger.KeyShare, error) {
		var f *ledger.CeremonyFault
		if errors.As(err, &f) {
			log.Error("key ceremony FAILED: a validator is faulty; no key share written", "dealer", f.Dealer, "recipient", f.Recipient, "blamed", f.Blamed(), "err", f.Error())
		}
		return nil, nil, err
	}

	// Ceremony signing keys.
	in.mu.Lock()
	for i, pk := range cfg.pubs {
		in.keys[i] = pk
	}
	in.keys[self] = myPub
	in.mu.Unlock()
	if err := sendAll(msgKey, myPub); err != nil {
		return nil, nil, fmt.Errorf("ceremony keys: %w", err)
	}
	if err := wait("ceremony keys", 0, func() []int { return missing(com.N, in.keys) }); err != nil {
		return nil, nil, err
	}
	var bind []byte
	in.mu.Lock()
	for i := 0; i < com.N; i++ {
		bind = append(bind, in.keys[i]...)
	}
	in.mu.Unlock()
	sign, _ := ledger.Ed25519DealAuth(cfg.priv, nil)

	party, err := ledger.NewParty(p, com, self, seed)
	if err != nil {
		return nil, nil, err
	}
	log.Info("key ceremony: round 1", "parties", com.N, "threshold", com.T)
	r1, deals, err := party.Round1()
	if err != nil {
		return nil, nil, err
	}
	if fault != nil && fault.corruptDeal != nil {
		for j, d := range deals {
			deals[j] = fault.corruptDeal(p, d)
		}
	}
	signed, err := party.SignDeals(deals, sign)
	if err != nil {
		return nil, nil, err
	}
	r1b, err := r1.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	in.mu.Lock()
	in.r1[self] = r1
	for _, sd := range signed {
		if sd.Deal.To == self {
			in.deals[self] = sd
		}
	}
	in.mu.Unlock()
	if err := sendAll(msgRound1, r1b); err != nil {
		return nil, nil, fmt.Errorf("ceremony round 1: %w", err)
	}
	for _, sd := range signed {
		if sd.Deal.To == self {
			continue
		}
		db, err := sd.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		if err := requestRetryOn(ctx, host, protoCeremony, peers[sd.Deal.To], append([]byte{msgDeal}, db...)); err != nil {
			return nil, nil, fmt.Errorf("ceremony deal to %d: %w", sd.Deal.To, err)
		}
	}
	if err := wait("round-1 messages", 0, func() []int { return missing(com.N, in.r1) }); err != nil {
		return nil, nil, err
	}
	if err := wait("validly signed deals", 0, func() []int { return missing(com.N, in.deals) }); err != nil {
		return nil, nil, err
	}
	all1 := collect(&in.mu, func() []*ledger.Round1 {
		out := make([]*ledger.Round1, 0, com.N)
		for _, m := range in.r1 {
			out = append(out, m)
		}
		return out
	})
	// Every deal is fixed before Round2 leaves this node.
	for _, sd := range collect(&in.mu, func() []*ledger.SignedDeal {
		out := make([]*ledger.SignedDeal, 0, com.N)
		for i := 0; i < com.N; i++ {
			out = append(out, in.deals[i])
		}
		return out
	}) {
		if err := party.AcceptDeal(sd, verify); err != nil {
			return fail(err)
		}
	}
	log.Info("key ceremony: round 2")
	r2, err := party.Round2(all1)
	if err != nil {
		return nil, nil, err
	}
	in.mu.Lock()
	in.r2[self] = r2
	in.mu.Unlock()
	r2b, _ := r2.MarshalBinary()
	if err := sendAll(msgRound2, r2b); err != nil {
		return nil, nil, fmt.Errorf("ceremony round 2: %w", err)
	}
	if err := wait("round-2 messages", 0, func() []int { return missing(com.N, in.r2) }); err != nil {
		return nil, nil, err
	}
	all2 := collect(&in.mu, func() []*ledger.Round2 {
		out := make([]*ledger.Round2, 0, com.N)
		for _, m := range in.r2 {
			out = append(out, m)
		}
		return out
	})
	if f := collect(&in.mu, func() *ledger.CeremonyFault { return in.equiv }); f != nil {
		return fail(f)
	}
	keys, err := ledger.AggregatePublic(p, com, seed, all1, all2)
	if err != nil {
		return nil, nil, err
	}

	// Checks.
	log.Info("key ceremony: checking every deal")
	v, err := ledger.NewCeremonyVerifier(p, com, seed, bind, all1, all2, verify)
	if err != nil {
		return fail(err)
	}
	chk, err := party.Check(v)
	if err != nil {
		return nil, nil, err
	}
	if fault != nil && fault.tamperCheck != nil {
		fault.tamperCheck(p, chk)
	}
	cb, err := chk.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	in.mu.Lock()
	in.checks[self] = chk
	in.mu.Unlock()
	if err := sendAll(msgCheck, cb); err != nil {
		return nil, nil, fmt.Errorf("ceremony checks: %w", err)
	}
	if err := wait("check messages", 0, func() []int { return missing(com.N, in.checks) }); err != nil {
		return nil, nil, err
	}
	rep := v.Evaluate(collect(&in.mu, func() []*ledger.CeremonyCheck {
		out := make([]*ledger.CeremonyCheck, 0, com.N)
		for _, c := range in.checks {
			out = append(out, c)
		}
		return out
	}))
	if !rep.Accept() {
		log.Warn("key ceremony: checks failed; revealing the deals of the failed dealers", "failed_dealers", rep.Failed, "joint_test_ok", rep.FinalOK)
	}
	rev, err := party.Reveal(rep)
	if err != nil {
		return nil, nil, err
	}
	rb, err := rev.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	in.mu.Lock()
	in.reveals[self] = rev
	in.mu.Unlock()
	if err := sendAll(msgVerdict, rb); err != nil {
		return nil, nil, fmt.Errorf("ceremony verdicts: %w", err)
	}
	var limit time.Duration
	if !rep.Accept() {
		limit = revealWait // judge with what arrives: the silent are named
	}
	if err := wait("verdicts", limit, func() []int { return missing(com.N, in.reveals) }); err != nil && (rep.Accept() || ctx.Err() != nil) {
		return nil, nil, err
	}
	ks, err := party.VerifiedKeyShare(v, rep, collect(&in.mu, func() []*ledger.CeremonyReveal {
		out := make([]*ledger.CeremonyReveal, 0, com.N)
		for _, r := range in.reveals {
			out = append(out, r)
		}
		return out
	}))
	if err != nil {
		return fail(err)
	}

	kb, err := keys.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	digest := sha256.Sum256(kb)
	in.mu.Lock()
	in.done[self] = digest
	in.mu.Unlock()
	if err := sendAll(msgDone, digest[:]); err != nil {
		return nil, nil, fmt.Errorf("ceremony confirmation: %w", err)
	}
	if err := wait("confirmations", 0, func() []int { return missing(com.N, in.done) }); err != nil {
		return nil, nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, d := range in.done {
		if d != digest {
			return nil, nil, fmt.Errorf("ceremony: validator %d aggregated different keys (a party equivocated); aborting", i)
		}
	}
	log.Info("key ceremony: done, every deal verified", "keys_sha256", fmt.Sprintf("%x", digest[:8]))
	return keys, ks, nil
}

// saveKeys writes the key share (0600: it never leaves this node) and the
// public keys.
func saveKeys(h Home, keys *ledger.PublicKeys, ks *ledger.KeyShare) error {
	kb, err := keys.MarshalBinary()
	if err != nil {
		return err
	}
	sb, err := ks.MarshalBinary()
	if err != nil {
		return err
	}
	if err := writeFileSync(h.PublicKeys(), kb, 0o644); err != nil {
		return err
	}
	return writeFileSync(h.KeyShare(), sb, 0o600)
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func loadKeys(p *ledger.Params, h Home) (*ledger.PublicKeys, *ledger.KeyShare, error) {
	kb, err := os.ReadFile(h.PublicKeys())
	if err != nil {
		return nil, nil, err
	}
	sb, err := os.ReadFile(h.KeyShare())
	if err != nil {
		return nil, nil, err
	}
	keys, err := p.DecodePublicKeys(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", h.PublicKeys(), err)
	}
	ks, err := p.DecodeKeyShare(sb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", h.KeyShare(), err)
	}
	return keys, ks, nil
}
