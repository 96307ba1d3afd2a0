package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
)

// Key ceremony over the network. Public round messages go to every other
// validator; each Shamir deal goes only to its recipient, over the
// authenticated and encrypted libp2p stream to that recipient's peer id.
// A node accepts a message only from the peer id genesis assigns to the
// claimed sender. At the end every node announces the hash of the keys it
// aggregated; all must agree, which catches a party that sent different
// round-1 messages to different parties.

var protoCeremony = p2p.ProtocolID("ceremony", 1)

const (
	msgRound1 byte = 1
	msgDeal   byte = 2
	msgRound2 byte = 3
	msgDone   byte = 4
)

type ceremonyInbox struct {
	mu     sync.Mutex
	r1     map[int]*ledger.Round1
	r2     map[int]*ledger.Round2
	deals  map[int]*ledger.ShamirDeal
	done   map[int][32]byte
	notify chan struct{}
}

func (in *ceremonyInbox) poke() {
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

// runCeremony produces this validator's key share and the public keys.
func runCeremony(ctx context.Context, host *p2p.Host, p *ledger.Params, com *ledger.Committee, self int, peers []peer.ID, seed []byte, log *slog.Logger) (*ledger.PublicKeys, *ledger.KeyShare, error) {
	index := map[peer.ID]int{}
	for i, id := range peers {
		index[id] = i
	}
	in := &ceremonyInbox{r1: map[int]*ledger.Round1{}, r2: map[int]*ledger.Round2{}, deals: map[int]*ledger.ShamirDeal{}, done: map[int][32]byte{}, notify: make(chan struct{}, 1)}
	err := host.SetHandler(protoCeremony, func(_ context.Context, from peer.ID, payload []byte) ([]byte, error) {
		i, ok := index[from]
		if !ok || len(payload) < 1 {
			return nil, errors.New("not a validator of this chain")
		}
		kind, body := payload[0], payload[1:]
		in.mu.Lock()
		defer in.mu.Unlock()
		switch kind {
		case msgRound1:
			var m ledger.Round1
			if err := m.UnmarshalBinary(body); err != nil || m.From != i {
				return nil, errors.New("bad round-1 message")
			}
			in.r1[i] = &m
		case msgDeal:
			var d ledger.ShamirDeal
			if err := d.UnmarshalBinary(body); err != nil || d.From != i || d.To != self {
				return nil, errors.New("bad deal")
			}
			in.deals[i] = &d
		case msgRound2:
			var m ledger.Round2
			if err := m.UnmarshalBinary(body); err != nil || m.From != i {
				return nil, errors.New("bad round-2 message")
			}
			in.r2[i] = &m
		case msgDone:
			if len(body) != 32 {
				return nil, errors.New("bad done message")
			}
			var h [32]byte
			copy(h[:], body)
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

	party, err := ledger.NewParty(p, com, self, seed)
	if err != nil {
		return nil, nil, err
	}
	log.Info("key ceremony: round 1", "parties", com.N, "threshold", com.T)
	r1, deals, err := party.Round1()
	if err != nil {
		return nil, nil, err
	}
	r1b, err := r1.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	sendAll := func(kind byte, body []byte) error {
		var wg sync.WaitGroup
		errs := make([]error, len(peers))
		for j, id := range peers {
			if j == self {
				continue
			}
			wg.Add(1)
			go func(j int, id peer.ID) {
				defer wg.Done()
				errs[j] = requestRetry(ctx, host, id, append([]byte{kind}, body...))
			}(j, id)
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	in.mu.Lock()
	in.r1[self] = r1
	for _, d := range deals {
		if d.To == self {
			in.deals[self] = d
		}
	}
	in.mu.Unlock()
	if err := sendAll(msgRound1, r1b); err != nil {
		return nil, nil, fmt.Errorf("ceremony round 1: %w", err)
	}
	for _, d := range deals {
		if d.To == self {
			continue
		}
		db, _ := d.MarshalBinary()
		if err := requestRetry(ctx, host, peers[d.To], append([]byte{msgDeal}, db...)); err != nil {
			return nil, nil, fmt.Errorf("ceremony deal to %d: %w", d.To, err)
		}
	}
	wait := func(what string, have func() int) error {
		for {
			in.mu.Lock()
			n := have()
			in.mu.Unlock()
			if n >= com.N {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("ceremony: waiting for %s (%d of %d): %w", what, n, com.N, ctx.Err())
			case <-in.notify:
			case <-time.After(time.Second):
			}
		}
	}
	if err := wait("round-1 messages and deals", func() int { return min(len(in.r1), len(in.deals)) }); err != nil {
		return nil, nil, err
	}
	all1 := collect(in, func() []*ledger.Round1 {
		out := make([]*ledger.Round1, 0, com.N)
		for _, m := range in.r1 {
			out = append(out, m)
		}
		return out
	})
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
	if err := wait("round-2 messages", func() int { return len(in.r2) }); err != nil {
		return nil, nil, err
	}
	all2 := collect(in, func() []*ledger.Round2 {
		out := make([]*ledger.Round2, 0, com.N)
		for _, m := range in.r2 {
			out = append(out, m)
		}
		return out
	})
	keys, err := ledger.AggregatePublic(p, com, seed, all1, all2)
	if err != nil {
		return nil, nil, err
	}
	ks, err := party.Finish(collect(in, func() []*ledger.ShamirDeal {
		out := make([]*ledger.ShamirDeal, 0, com.N)
		for _, d := range in.deals {
			out = append(out, d)
		}
		return out
	}))
	if err != nil {
		return nil, nil, err
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
	if err := wait("confirmations", func() int { return len(in.done) }); err != nil {
		return nil, nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, d := range in.done {
		if d != digest {
			return nil, nil, fmt.Errorf("ceremony: validator %d aggregated different keys (a party equivocated); aborting", i)
		}
	}
	log.Info("key ceremony: done", "keys_sha256", fmt.Sprintf("%x", digest[:8]))
	return keys, ks, nil
}

func collect[T any](in *ceremonyInbox, f func() T) T {
	in.mu.Lock()
	defer in.mu.Unlock()
	return f()
}

// requestRetry delivers one ceremony message, retrying while the peer is
// still starting up.
func requestRetry(ctx context.Context, host *p2p.Host, to peer.ID, payload []byte) error {
	backoff := 200 * time.Millisecond
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := host.Request(c, to, protoCeremony, payload)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
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
