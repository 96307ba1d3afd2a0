package actors

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/ledger"
)

type addUpload struct {
	U *chain.Upload
	// MaxPerSender refuses a submitted upload whose sender already has that
	// many uploads waiting (0: no limit).
	MaxPerSender int
	// Referenced uploads were fetched because a proposal named them: kept
	// apart from submitted ones (see mempoolActor).
	Referenced bool
}
type addOpen struct{ O chain.Open }
type getUpload struct{ ID [32]byte }
type getRaw struct{ Hash [32]byte }
type candidates struct{ Max int }
type takeOpens struct{ Max int }
type addConsent struct{ C ledger.Consent }
type takeConsents struct{ Max int }
type committed struct {
	IDs     [][32]byte
	OpenPub [][]byte
	// Consents are the IDs of the consents the block recorded.
	Consents [][32]byte
	// ConsentOK reports whether a waiting consent can still be recorded
	// on the finalized book (ledger.Book.CheckConsent); nil evicts nothing.
	ConsentOK func(*ledger.Consent) bool
	// LastOp is the finalized book's last accepted operation of an account
	// and its last consumed nonce; nil evicts nothing.
	LastOp func(ledger.AccountID) ([32]byte, uint64, bool)
}
type knows struct{ ID [32]byte }
type mempoolSize struct{}
type takeAcks struct{ Max int }
type setPieces struct {
	ID     [32]byte
	Pieces map[int]*ledger.Piece
}

type sizeInfo struct{ Uploads, Opens int }

// mempoolActor owns the transfers waiting to be ordered, and the uploads
// fetched because a proposal named them. Those are kept apart: they were
// never admitted here (no plaintext checks), so this node never proposes
// them, and their number is bounded on its own. Uploads are keyed by
// transfer id, not by the hash of their sealed bytes: a copy of someone's
// sealed bytes under another envelope is another upload and cannot shadow
// the genuine one.
type mempoolActor struct {
	max     int
	uploads map[[32]byte]*chain.Upload // by transfer id
	fetched map[[32]byte]*chain.Upload // by transfer id
	order   [][32]byte                 // fetched, oldest first
	opens   map[string]chain.Open
	// consents waiting to be recorded, by consent ID, in arrival order,
	// and how many each owner has waiting (at most ledger.MaxConsents).
	consents     map[[32]byte]ledger.Consent
	consentOrder [][32]byte
	consentsBy   map[ledger.AccountID]int
	pending      map[ledger.AccountID]int // submitted uploads waiting, by sender
	recent       map[[32]byte]int         // operations of the last recentBlocks blocks -> block sequence
	seq          int                      // committed blocks seen
}

// recentBlocks is how many committed blocks' operations count as in flight:
// their results reach the book two blocks later.
const recentBlocks = 3

// evictDead drops submitted uploads that can never be ordered: built on an
// operation that is not their account's last accepted one in book, not in a
// recent block, and not waiting here (it was rejected, or never existed), so
// no block may order them. Their successors follow at the next block.
func (m *mempoolActor) evictDead(lastOp func(ledger.AccountID) ([32]byte, uint64, bool)) {
	for id, u := range m.uploads {
		e := &u.Envs[0]
		last, nonce, known := lastOp(e.From)
		if known && e.Nonce <= nonce {
			m.drop(id) // its nonce is spent: a replay from now on
			continue
		}
		if _, ok := m.recent[e.Prev]; ok {
			continue
		}
		if p, ok := m.uploads[e.Prev]; ok && p.Envs[0].From == e.From {
			continue
		}
		if known && last == e.Prev {
			continue
		}
		m.drop(id)
	}
}

// maxFetched bounds the uploads kept for proposals: four blocks' worth.
const maxFetched = 4 * chain.MaxBlockSubs

// uploadTTL is how long a submitted upload may wait. One that N-f
// validators could not open (its dealer sealed bad boxes) is never ordered;
// it leaves the pool after this, with its sender's slot.
const uploadTTL = 2 * time.Minute

// expire drops submitted uploads older than uploadTTL.
func (m *mempoolActor) expire(now time.Time) {
	for h, u := range m.uploads {
		if !u.Received.IsZero() && now.Sub(u.Received) > uploadTTL {
			m.drop(h)
		}
	}
}

// drop forgets a submitted upload and its sender's slot.
func (m *mempoolActor) drop(h [32]byte) {
	if u, ok := m.uploads[h]; ok {
		for i := range u.Envs {
			if m.pending[u.Envs[i].From]--; m.pending[u.Envs[i].From] <= 0 {
				delete(m.pending, u.Envs[i].From)
			}
		}
	}
	delete(m.uploads, h)
}

func (m *mempoolActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *addUpload:
		id := msg.U.ID()
		if msg.Referenced {
			if _, ok := m.uploads[id]; ok {
				ctx.Respond(false)
				return
			}
			if _, ok := m.fetched[id]; !ok {
				m.fetched[id] = msg.U
				m.order = append(m.order, id)
				for len(m.order) > maxFetched {
					delete(m.fetched, m.order[0])
					m.order = m.order[1:]
				}
			}
			ctx.Respond(true)
			return
		}
		if _, dup := m.uploads[id]; dup {
			ctx.Respond(addResult{})
			return
		}
		if len(m.uploads) >= m.max {
			ctx.Respond(addResult{Full: true})
			return
		}
		for i := range msg.U.Envs {
			if msg.MaxPerSender > 0 && m.pending[msg.U.Envs[i].From] >= msg.MaxPerSender {
				ctx.Respond(addResult{SenderBusy: true})
				return
			}
		}
		m.uploads[id] = msg.U
		for i := range msg.U.Envs {
			m.pending[msg.U.Envs[i].From]++
		}
		ctx.Respond(addResult{Added: true})
	case *addOpen:
		m.opens[string(msg.O.SignPub)] = msg.O
		ctx.Respond(true)
	case *addConsent:
		id := msg.C.ID()
		if _, dup := m.consents[id]; !dup {
			if len(m.consents) >= maxPoolConsents || m.consentsBy[msg.C.Owner] >= ledger.MaxConsents {
				ctx.Respond(false)
				return
			}
			m.consents[id] = msg.C
			m.consentOrder = append(m.consentOrder, id)
			m.consentsBy[msg.C.Owner]++
		}
		ctx.Respond(true)
	case *takeConsents:
		out := []ledger.Consent{}
		for _, id := range m.consentOrder {
			if len(out) >= msg.Max {
				break
			}
			out = append(out, m.consents[id])
		}
		ctx.Respond(out)
	case *getUpload:
		if u, ok := m.uploads[msg.ID]; ok {
			ctx.Respond(u)
			return
		}
		ctx.Respond(m.fetched[msg.ID])
	case *getRaw:
		for _, pool := range []map[[32]byte]*chain.Upload{m.uploads, m.fetched} {
			for _, u := range pool {
				if u.Hash == msg.Hash {
					ctx.Respond(u.Raw)
					return
				}
			}
		}
		ctx.Respond([]byte(nil))
	case *candidates:
		out := make([]*chain.Upload, 0, len(m.uploads))
		for _, u := range m.uploads {
			out = append(out, u)
		}
		sortOldestFirst(out)
		if len(out) > msg.Max {
			out = out[:msg.Max]
		}
		ctx.Respond(out)
	case *takeOpens:
		keys := make([]string, 0, len(m.opens))
		for k := range m.opens {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := []chain.Open{}
		for _, k := range keys {
			if len(out) >= msg.Max {
				break
			}
			out = append(out, m.opens[k])
		}
		ctx.Respond(out)
	case *setPieces:
		// A copy with the pieces: readers holding the old pointer never see
		// it change.
		for _, pool := range []map[[32]byte]*chain.Upload{m.uploads, m.fetched} {
			if u, ok := pool[msg.ID]; ok && u.Pieces == nil {
				c := *u
				c.Pieces = msg.Pieces
				pool[msg.ID] = &c
			}
		}
		ctx.Respond(true)
	case *takeAcks:
		out := make([]*chain.Upload, 0, len(m.uploads))
		for _, u := range m.uploads {
			if u.Pieces != nil {
				out = append(out, u)
			}
		}
		sortOldestFirst(out)
		hs := make([][32]byte, 0, min(len(out), msg.Max))
		for _, u := range out {
			if len(hs) >= msg.Max {
				break
			}
			hs = append(hs, u.ID())
		}
		ctx.Respond(hs)
	case *committed:
		m.seq++
		for _, id := range msg.IDs {
			m.drop(id)
			delete(m.fetched, id)
			m.recent[id] = m.seq
		}
		for id, s := range m.recent {
			if s+recentBlocks <= m.seq {
				delete(m.recent, id)
			}
		}
		if msg.LastOp != nil {
			m.evictDead(msg.LastOp)
		}
		for _, p := range msg.OpenPub {
			delete(m.opens, string(p))
		}
		for _, id := range msg.Consents {
			m.dropConsent(id)
		}
		keep := m.consentOrder[:0]
		for _, id := range m.consentOrder {
			c, ok := m.consents[id]
			if ok && msg.ConsentOK != nil && !msg.ConsentOK(&c) {
				// It can no longer be recorded: a replay now, expired,
				// over its owner's limits. Kept, it would hold a slot and
				// make the proposer think work waits, forever; its owner
				// sees it unrecorded and may sign it again.
				m.dropConsent(id)
				ok = false
			}
			if ok {
				keep = append(keep, id)
			}
		}
		m.consentOrder = keep
	case *knows:
		_, inBlock := m.recent[msg.ID]
		_, waiting := m.uploads[msg.ID]
		ctx.Respond(inBlock || waiting)
	case *mempoolSize:
		m.expire(time.Now())
		ctx.Respond(sizeInfo{Uploads: len(m.uploads), Opens: len(m.opens) + len(m.consents)})
	}
}

func sortOldestFirst(out []*chain.Upload) {
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Received.Equal(out[j].Received) {
			return out[i].Received.Before(out[j].Received)
		}
		return string(out[i].Hash[:]) < string(out[j].Hash[:])
	})
}

// Mempool is the client of the mempool actor. It implements chain.Mempool.
type Mempool struct {
	sys *actor.ActorSystem
	pid *actor.PID
}

var _ chain.Mempool = (*Mempool)(nil)

// NewMempool spawns the mempool actor holding at most max uploads (uploads a
// proposal references are admitted beyond that).
func NewMempool(sys *actor.ActorSystem, max int) *Mempool {
	props := actor.PropsFromProducer(func() actor.Actor {
		return &mempoolActor{max: max, uploads: map[[32]byte]*chain.Upload{}, fetched: map[[32]byte]*chain.Upload{}, opens: map[string]chain.Open{}, consents: map[[32]byte]ledger.Consent{}, consentsBy: map[ledger.AccountID]int{}, pending: map[ledger.AccountID]int{}, recent: map[[32]byte]int{}}
	})
	return &Mempool{sys: sys, pid: sys.Root.Spawn(props)}
}

// ErrMempool reports a mempool that did not answer (stopped or overloaded).
var ErrMempool = errors.New("actors: mempool did not answer")

const mempoolTimeout = 10 * time.Second

func ask[T any](m *Mempool, msg any) (T, error) {
	var zero T
	r, err := m.sys.Root.RequestFuture(m.pid, msg, mempoolTimeout).Result()
	if err != nil {
		return zero, fmt.Errorf("%w: %w", ErrMempool, err)
	}
	v, ok := r.(T)
	if !ok && r != nil {
		return zero, fmt.Errorf("%w: unexpected reply %T", ErrMempool, r)
	}
	return v, nil
}

// addResult is what adding a submitted upload did.
type addResult struct {
	Added      bool
	Full       bool // the pool holds its maximum
	SenderBusy bool // a sender has too many uploads waiting
}

// ErrPoolFull and ErrSenderBusy say why a submitted upload was not added.
var (
	ErrPoolFull   = errors.New("actors: mempool full")
	ErrSenderBusy = errors.New("actors: too many transfers from this account waiting")
)

// Add inserts an upload a client submitted; false (and no error) if it is a
// duplicate. A full pool is ErrPoolFull; a sender with maxPerSender uploads
// waiting (0: no limit) is ErrSenderBusy.
func (m *Mempool) Add(u *chain.Upload, maxPerSender int) (bool, error) {
	r, err := ask[addResult](m, &addUpload{U: u, MaxPerSender: maxPerSender})
	switch {
	case err != nil:
		return false, err
	case r.Full:
		return false, ErrPoolFull
	case r.SenderBusy:
		return false, ErrSenderBusy
	}
	return r.Added, nil
}

// AddReferenced keeps an upload a proposal references (fetched from a peer)
// where validation finds it; it is never proposed by this node.
func (m *Mempool) AddReferenced(u *chain.Upload) error {
	_, err := ask[bool](m, &addUpload{U: u, Referenced: true})
	return err
}

// AddOpen queues an account opening.
func (m *Mempool) AddOpen(o chain.Open) error {
	_, err := ask[bool](m, &addOpen{O: o})
	return err
}

// maxPoolConsents bounds the consents waiting in a pool; one owner may
// have ledger.MaxConsents waiting.
const maxPoolConsents = 4096

// AddConsent queues a score consent or revocation (checked when a block
// records it; dropped once the finalized book refuses it).
func (m *Mempool) AddConsent(c ledger.Consent) error {
	ok, err := ask[bool](m, &addConsent{C: c})
	if err == nil && !ok {
		err = fmt.Errorf("%w: the pool holds %d consents, or %d of this owner's", ErrPoolFull, maxPoolConsents, ledger.MaxConsents)
	}
	return err
}

// Consents returns pending consents, oldest first.
func (m *Mempool) Consents(max int) ([]ledger.Consent, error) {
	return ask[[]ledger.Consent](m, &takeConsents{Max: max})
}

// Get returns an upload by transfer id, nil if the pool does not hold it.
func (m *Mempool) Get(id [32]byte) (*chain.Upload, error) {
	return ask[*chain.Upload](m, &getUpload{ID: id})
}

// SetPieces gives an upload whose box did not open the pieces this validator
// recovered from co-holders (checked against the dealer's commitments).
func (m *Mempool) SetPieces(id [32]byte, pieces map[int]*ledger.Piece) error {
	_, err := ask[bool](m, &setPieces{ID: id, Pieces: pieces})
	return err
}

// Raw returns the sealed bytes of an upload by their hash (what peers fetch),
// nil if the pool holds none.
func (m *Mempool) Raw(hash [32]byte) ([]byte, error) {
	return ask[[]byte](m, &getRaw{Hash: hash})
}

// Candidates returns submitted uploads, oldest first.
func (m *Mempool) Candidates(max int) ([]*chain.Upload, error) {
	return ask[[]*chain.Upload](m, &candidates{Max: max})
}

// Acks returns the transfer ids of submitted uploads whose sealed box this
// validator opened, oldest first.
func (m *Mempool) Acks(max int) ([][32]byte, error) {
	return ask[[][32]byte](m, &takeAcks{Max: max})
}

// Opens returns pending openings.
func (m *Mempool) Opens(max int) ([]chain.Open, error) {
	return ask[[]chain.Open](m, &takeOpens{Max: max})
}

// HasWork reports whether an upload or an opening waits.
func (m *Mempool) HasWork() (bool, error) {
	s, err := ask[sizeInfo](m, &mempoolSize{})
	return s.Uploads+s.Opens > 0, err
}

// Committed drops what a committed block included, and the uploads that can
// never be ordered any more (mempoolActor.evictDead) given the finalized book.
func (m *Mempool) Committed(b *chain.Block, book *ledger.Book) {
	msg := &committed{}
	if book != nil {
		msg.LastOp = func(id ledger.AccountID) ([32]byte, uint64, bool) {
			a, ok := book.Account(id)
			if !ok {
				return [32]byte{}, 0, false
			}
			return a.LastOp, a.Nonce, true
		}
	}
	for _, s := range b.Subs {
		for i := range s.Envelopes {
			msg.IDs = append(msg.IDs, s.Envelopes[i].ID())
		}
	}
	for _, o := range b.Opens {
		msg.OpenPub = append(msg.OpenPub, o.SignPub)
	}
	for i := range b.Consents {
		msg.Consents = append(msg.Consents, b.Consents[i].ID())
	}
	if book != nil {
		// Signatures were checked when admitted: state only, not an
		// ed25519 verification per waiting consent and block.
		msg.ConsentOK = func(c *ledger.Consent) bool { return book.ConsentRecordable(c) == nil }
	}
	m.sys.Root.Send(m.pid, msg)
}

// Knows reports whether an operation is waiting in the pool or was in one of
// the last blocks: an operation built on it may still be ordered.
func (m *Mempool) Knows(id [32]byte) (bool, error) {
	return ask[bool](m, &knows{ID: id})
}

// Size is the number of uploads waiting.
func (m *Mempool) Size() (int, error) {
	s, err := ask[sizeInfo](m, &mempoolSize{})
	return s.Uploads, err
}

// dropConsent removes a waiting consent (not from consentOrder: the caller
// rebuilds it).
func (m *mempoolActor) dropConsent(id [32]byte) {
	c, ok := m.consents[id]
	if !ok {
		return
	}
	delete(m.consents, id)
	if m.consentsBy[c.Owner]--; m.consentsBy[c.Owner] <= 0 {
		delete(m.consentsBy, c.Owner)
	}
}
