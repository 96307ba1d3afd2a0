package client

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// Holder is what reading a balance needs from a wallet: the account, its
// signing key (to authorize re-encryption) and the owner's HE keys (to
// decrypt locally). *wallet.Wallet implements it.
type Holder interface {
	ID() ledger.AccountID
	SignPub() ed25519.PublicKey
	Owner() *ledger.OwnerKeys
	BalanceSignature(chain string, q ledger.BalanceQuery, ownerPK []byte) []byte
}

// Balance is an account's decrypted balances and the height of the state
// they were read at. Amount is the available balance (what the owner may
// spend; only its own operations change it); Pending holds the credits
// received since the owner's last apply, which an apply naming Height moves
// into Amount.
type Balance struct {
	Amount  uint64
	Pending uint64
	Height  uint64
}

// ParseOpID decodes an account's last accepted operation (api.Account
// LastOp): the Prev of its next operation. Empty means none.
func ParseOpID(s string) ([32]byte, error) {
	var id [32]byte
	if s == "" {
		return id, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return id, fmt.Errorf("last operation id %q: want 64 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// Multi is a client of a whole committee, built from the genesis.
type Multi struct {
	g     *genesis.Genesis
	p     *ledger.Params
	com   *ledger.Committee
	dec   *ledger.Decryptor
	nodes []*Client

	mu     sync.Mutex
	dealer *ledger.Dealer

	poll time.Duration // WaitTransfer's first polling interval

	epochs []genesis.Epoch // the validator-set changes g reflects (Current)
}

// NewMulti returns a client of every validator of g.
func NewMulti(g *genesis.Genesis, opts ...Option) (*Multi, error) {
	o := buildOptions(opts)
	p := o.params
	if p == nil {
		set, err := ledger.ParamSetByName(g.ParamSet)
		if err != nil {
			return nil, err
		}
		if p, err = ledger.NewParams(set); err != nil {
			return nil, err
		}
	} else if p.Set.Name != g.ParamSet {
		return nil, fmt.Errorf("client: parameter set %q, genesis uses %q", p.Set.Name, g.ParamSet)
	}
	com, err := ledger.NewCommittee(len(g.Validators), g.Threshold)
	if err != nil {
		return nil, err
	}
	dec, err := ledger.NewDecryptor(p, com)
	if err != nil {
		return nil, err
	}
	m := &Multi{g: g, p: p, com: com, dec: dec, poll: 150 * time.Millisecond}
	for _, v := range g.Validators {
		m.nodes = append(m.nodes, New(v.API, opts...))
	}
	return m, nil
}

// Dial fetches the genesis from one node and returns a client of the
// chain's current committee (Current).
func Dial(ctx context.Context, nodeURL string, opts ...Option) (*Multi, error) {
	g, err := New(nodeURL, opts...).Genesis(ctx)
	if err != nil {
		return nil, err
	}
	return Current(ctx, g, opts...)
}

// Genesis is the chain's genesis.
func (m *Multi) Genesis() *genesis.Genesis { return m.g }

// Chain is the chain id.
func (m *Multi) Chain() string { return m.g.ChainID }

// Params is the chain's instantiated parameter set.
func (m *Multi) Params() *ledger.Params { return m.p }

// Threshold is how many validators must answer a balance query in agreement:
// the decryption threshold t plus the f byzantine validators that could be
// among them (ledger.Committee.Agreement).
func (m *Multi) Threshold() int { return m.com.Agreement() }

// Nodes are the per-validator clients, in validator index order.
func (m *Multi) Nodes() []*Client { return m.nodes }

// nodeErrors joins per-node failures into one readable error.
type nodeErrors []error

func (ne nodeErrors) Error() string {
	parts := make([]string, len(ne))
	for i, e := range ne {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (ne nodeErrors) Unwrap() []error { return ne }

// Balance reads and decrypts the holder's balance at the latest height a
// threshold of validators agree on.
func (m *Multi) Balance(ctx context.Context, h Holder) (Balance, error) {
	return m.BalanceAt(ctx, h, 0)
}

// BalanceAt is Balance at a height of at least minHeight: after an operation
// is decided at height H, a read at H or later includes it.
//
// Validators agree on a balance ciphertext only at the same height, so the
// client first asks every node for its applied height, picks the highest
// height a threshold of them has reached, and asks all of them for their
// share at that height. It retries while validators lag or disagree, until
// ctx ends.
func (m *Multi) BalanceAt(ctx context.Context, h Holder, minHeight uint64) (Balance, error) {
	pk, err := h.Owner().PK.MarshalBinary()
	if err != nil {
		return Balance{}, err
	}
	b, height, err := m.read(ctx, "balance", h.ID(), h.Owner(), minHeight, func(target uint64) (asker, error) {
		// Valid for a short while past the height asked for: a captured
		// request cannot be replayed later, and each validator answers it once.
		q := ledger.BalanceQuery{Height: target, Expiry: target + balanceExpiry, Nonce: uint64(time.Now().UnixNano())}
		req := api.BalanceRequest{
			Account:   h.ID().String(),
			Height:    q.Height,
			SignPub:   hex.EncodeToString(h.SignPub()),
			OwnerPK:   base64.StdEncoding.EncodeToString(pk),
			Nonce:     q.Nonce,
			Expiry:    q.Expiry,
			Signature: hex.EncodeToString(h.BalanceSignature(m.g.ChainID, q, pk)),
		}
		return func(ctx context.Context, c *Client) ([]byte, error) { return c.BalanceShare(ctx, req) }, nil
	})
	return Balance{Amount: b.Available, Pending: b.Pending, Height: height}, err
}

// asker asks one validator for its binary ledger.BalanceReply to a signed
// request.
type asker func(context.Context, *Client) ([]byte, error)

// read is the robust re-encrypted read behind balances and scores: at the
// highest height a threshold of validators has reached (at least
// minHeight), it sends every validator the request request builds for that
// height, and combines t + f agreeing replies with owner's keys
// (ledger.Decryptor.CombineBalances). It retries while validators lag or
// disagree, until ctx ends; what names the read in errors, subject the
// account read.
func (m *Multi) read(ctx context.Context, what string, subject ledger.AccountID, owner *ledger.OwnerKeys, minHeight uint64, request func(target uint64) (asker, error)) (ledger.Balances, uint64, error) {
	delay := 100 * time.Millisecond
	for {
		b, h, err := m.readOnce(ctx, what, owner, minHeight, request)
		if err == nil || !errors.Is(err, errRetry) {
			return b, h, err
		}
		select {
		case <-ctx.Done():
			return ledger.Balances{}, 0, fmt.Errorf("%s of %s: %w (last: %v)", what, subject.Short(), ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*3/2, time.Second)
	}
}

func (m *Multi) readOnce(ctx context.Context, what string, owner *ledger.OwnerKeys, minHeight uint64, request func(uint64) (asker, error)) (ledger.Balances, uint64, error) {
	target, err := m.commonHeight(ctx, what, minHeight)
	if err != nil {
		return ledger.Balances{}, 0, err
	}
	ask, err := request(target)
	if err != nil {
		return ledger.Balances{}, 0, err
	}
	replies, errs := m.gather(ctx, ask)
	return m.combine(what, owner, replies, errs, minHeight)
}

// balanceExpiry is how many heights past the one it names a balance request
// stays answerable: enough for slow nodes, far below ledger.BalanceQueryWindow.
const balanceExpiry = 32

// commonHeight is the highest applied height that at least a threshold of
// validators have reached (0, meaning "latest", if nodes do not report one).
func (m *Multi) commonHeight(ctx context.Context, what string, minHeight uint64) (uint64, error) {
	type res struct {
		h   uint64
		err error
	}
	// A hung node must not stall every balance read for a full HTTP timeout.
	sctx, cancel := context.WithTimeout(ctx, statusProbeTimeout)
	defer cancel()
	ch := make(chan res, len(m.nodes))
	for _, c := range m.nodes {
		go func() {
			s, err := c.Status(sctx)
			switch {
			case err != nil && sctx.Err() != nil && ctx.Err() == nil:
				ch <- res{err: &UnreachableError{URL: c.base, Err: fmt.Errorf("status: %w", errTimeout)}}
			case err != nil:
				ch <- res{err: err}
			case !s.Ready:
				ch <- res{err: &APIError{URL: c.base + api.PathStatus, Status: 503, Code: "not_ready", Message: "node is not ready yet"}}
			default:
				ch <- res{h: s.AppliedHeight}
			}
		}()
	}
	var heights []uint64
	var errs nodeErrors
	for range m.nodes {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
		} else {
			heights = append(heights, r.h)
		}
	}
	t := m.Threshold()
	if len(heights) < t {
		if len(heights)+countRetryable(errs) >= t {
			return 0, fmt.Errorf("%w: %d of %d validators ready, need %d: %v", errRetry, len(heights), len(m.nodes), t, errs)
		}
		return 0, fmt.Errorf("%s needs %d of %d validators, %d answered: %w", what, t, len(m.nodes), len(heights), errs)
	}
	sort.Slice(heights, func(i, j int) bool { return heights[i] > heights[j] })
	target := heights[t-1]
	if target < minHeight {
		return 0, fmt.Errorf("%w: %d validators have not yet applied height %d (at %d)", errRetry, t, minHeight, target)
	}
	return target, nil
}

var errRetry = errors.New("retry")

// statusProbeTimeout bounds the height probe before a balance read.
const statusProbeTimeout = 5 * time.Second

type reply struct {
	r   *ledger.BalanceReply
	url string
}

func (m *Multi) gather(ctx context.Context, ask asker) ([]reply, []error) {
	type res struct {
		reply
		err error
	}
	ch := make(chan res, len(m.nodes))
	for i, c := range m.nodes {
		go func() {
			b, err := ask(ctx, c)
			if err != nil {
				ch <- res{err: err}
				return
			}
			r, err := m.p.DecodeBalanceReply(b)
			if err != nil {
				ch <- res{err: fmt.Errorf("node %s: bad balance reply: %w", hostOf(c.base), err)}
				return
			}
			if r.Validator != i {
				ch <- res{err: fmt.Errorf("node %s: balance reply signed as validator %d, genesis says %d", hostOf(c.base), r.Validator, i)}
				return
			}
			ch <- res{reply: reply{r: r, url: c.base}}
		}()
	}
	var out []reply
	var errs []error
	for range m.nodes {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
		} else {
			out = append(out, r.reply)
		}
	}
	return out, errs
}

// combine decrypts at the highest height at which at least a threshold of
// replies were computed.
func (m *Multi) combine(what string, owner *ledger.OwnerKeys, replies []reply, errs []error, minHeight uint64) (ledger.Balances, uint64, error) {
	t := m.Threshold()
	if err := m.refused(errs); err != nil {
		return ledger.Balances{}, 0, err
	}
	if len(replies) < t {
		if len(replies)+countRetryable(errs) >= t {
			return ledger.Balances{}, 0, fmt.Errorf("%w: %d of %d validators answered, need %d: %v", errRetry, len(replies), len(m.nodes), t, nodeErrors(errs))
		}
		return ledger.Balances{}, 0, fmt.Errorf("%s needs %d of %d validators, %d answered: %w", what, t, len(m.nodes), len(replies), nodeErrors(errs))
	}
	byHeight := map[uint64][]*ledger.BalanceReply{}
	var heights []uint64
	for _, r := range replies {
		if byHeight[r.r.Height] == nil {
			heights = append(heights, r.r.Height)
		}
		byHeight[r.r.Height] = append(byHeight[r.r.Height], r.r)
	}
	sort.Slice(heights, func(i, j int) bool { return heights[i] > heights[j] })
	for _, h := range heights {
		g := byHeight[h]
		if len(g) < t {
			continue
		}
		if h < minHeight {
			break
		}
		b, height, err := m.dec.CombineBalances(owner, g)
		if err != nil {
			return ledger.Balances{}, 0, fmt.Errorf("combine %s at height %d: %w", what, h, err)
		}
		return b, height, nil
	}
	return ledger.Balances{}, 0, fmt.Errorf("%w: no %d validators agree on a height >= %d (heights %v)", errRetry, t, minHeight, heights)
}

// refused returns a final refusal if more validators gave it than could be
// faulty: an unknown account, or a refused consent (ledger.ErrConsent:
// none, another lender's, revoked, expired). Retrying would not change it.
func (m *Multi) refused(errs []error) error {
	for _, final := range []error{ErrUnknownAccount, ledger.ErrConsent} {
		var first error
		n := 0
		for _, err := range errs {
			if errors.Is(err, final) {
				n++
				if first == nil {
					first = err
				}
			}
		}
		if n > len(m.nodes)-m.Threshold() {
			return first
		}
	}
	return nil
}

// countRetryable counts failures that may go away: a node not ready yet, or
// not yet at the height asked (409), or past it (410, a race with pruning).
// A refused consent (409 revoked, 410 expired) is final, not retryable.
func countRetryable(errs []error) int {
	n := 0
	for _, err := range errs {
		var ae *APIError
		if errors.Is(err, ledger.ErrConsent) {
			continue
		}
		if errors.Is(err, ErrNotReady) || errors.As(err, &ae) && (ae.Status == 409 || ae.Status == 410) {
			n++
		}
	}
	return n
}

// Account reads an account's registry entry from the first node that answers.
func (m *Multi) Account(ctx context.Context, id string) (*api.Account, error) {
	var a *api.Account
	err := m.any(ctx, func(c *Client) (err error) {
		a, err = c.Account(ctx, id)
		return err
	})
	return a, err
}

// WaitAccount polls until at least n validators know the account (a freshly
// opened account appears at each node as it applies the opening), or ctx
// ends.
func (m *Multi) WaitAccount(ctx context.Context, id string, n int) error {
	for {
		known := 0
		var last error
		for _, c := range m.nodes {
			if _, err := c.Account(ctx, id); err == nil {
				known++
			} else {
				last = err
			}
		}
		if known >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("account %s known to %d of %d validators, waited for %d: %w (last: %v)", short(id), known, len(m.nodes), n, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Status returns the first answering node's status.
func (m *Multi) Status(ctx context.Context) (*api.Status, error) {
	var s *api.Status
	err := m.any(ctx, func(c *Client) (err error) {
		s, err = c.Status(ctx)
		return err
	})
	return s, err
}

// CommittedHeight is a committed height no single node can inflate: the
// (f+1)-th highest of the heights the nodes report, so at least one
// honest node has committed it (f = floor((N-1)/3) may lie). It needs f+1
// answers.
func (m *Multi) CommittedHeight(ctx context.Context) (uint64, error) {
	type answer struct {
		h   uint64
		err error
	}
	out := make(chan answer, len(m.nodes))
	for _, c := range m.nodes {
		go func(c *Client) {
			st, err := c.Status(ctx)
			if err != nil {
				out <- answer{err: err}
				return
			}
			out <- answer{h: st.Height}
		}(c)
	}
	var hs []uint64
	var last error
	for range m.nodes {
		a := <-out
		if a.err != nil {
			last = a.err
			continue
		}
		hs = append(hs, a.h)
	}
	f := m.com.F()
	if len(hs) < f+1 {
		return 0, fmt.Errorf("%d of %d nodes answered, need %d: %w", len(hs), len(m.nodes), f+1, last)
	}
	slices.Sort(hs)
	return hs[len(hs)-1-f], nil
}

// History returns the account's history from the first answering node.
func (m *Multi) History(ctx context.Context, id string) (*api.History, error) {
	var h *api.History
	err := m.any(ctx, func(c *Client) (err error) {
		h, err = c.History(ctx, id)
		return err
	})
	return h, err
}

// Open opens an account at the first reachable node.
func (m *Multi) Open(ctx context.Context, req api.OpenRequest) (*api.OpenResponse, error) {
	var r *api.OpenResponse
	err := m.any(ctx, func(c *Client) (err error) {
		r, err = c.Open(ctx, req)
		return err
	})
	return r, err
}

// any runs f on each node in turn until one answers; only unreachable or
// not-ready nodes are skipped, any other answer is final.
func (m *Multi) any(ctx context.Context, f func(*Client) error) error {
	return m.anyFrom(ctx, 0, f)
}

func (m *Multi) anyFrom(ctx context.Context, start int, f func(*Client) error) error {
	var errs nodeErrors
	for k := range m.nodes {
		c := m.nodes[(start+k)%len(m.nodes)]
		err := f(c)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrNotReady) {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no validator answered: %w", errs)
}

// Dealer returns the wallet's transfer builder for this chain: it seals
// each transfer's shares to the genesis validators' keys (derived from their
// consensus keys), so it needs no network and no homomorphic key.
func (m *Multi) Dealer() (*ledger.Dealer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dealer != nil {
		return m.dealer, nil
	}
	sh, err := ledger.NewSharing(m.com.N, m.com.F())
	if err != nil {
		return nil, err
	}
	keys := make([]*ecdh.PublicKey, len(m.g.Validators))
	for i, v := range m.g.Validators {
		pub, err := v.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("genesis validator %d: %w", i, err)
		}
		if keys[i], err = ledger.SealPublicKey(pub); err != nil {
			return nil, fmt.Errorf("genesis validator %d: %w", i, err)
		}
	}
	d, err := ledger.NewDealer(m.p, sh, keys, m.g.ChainID)
	if err != nil {
		return nil, err
	}
	m.dealer = d
	return d, nil
}

// Submit uploads a submission to one node, rotating the first choice across
// calls and moving on when a node is unreachable. It returns the transfer
// ids, one per envelope.
func (m *Multi) Submit(ctx context.Context, sub *ledger.Submission) ([]string, error) {
	// One account's operations go to the same node first, so they reach
	// the validators in the order the wallet sent them (each is built on
	// the available balance its predecessors leave).
	start := 0
	if len(sub.Envelopes) > 0 {
		start = int(binary.BigEndian.Uint32(sub.Envelopes[0].From[:4]) % uint32(len(m.nodes)))
	}
	var r *api.SubmitResponse
	err := m.anyFrom(ctx, start, func(c *Client) (err error) {
		r, err = c.Submit(ctx, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r.IDs, nil
}

// WaitTransfer polls until the transfer is committed or rejected, or ctx
// ends. A node that has not seen the transfer yet (404, "unknown") counts as
// pending.
func (m *Multi) WaitTransfer(ctx context.Context, id string) (*api.TransferStatus, error) {
	delay := m.poll
	k := 0
	for {
		c := m.nodes[k%len(m.nodes)]
		s, err := c.Transfer(ctx, id)
		switch {
		case err == nil && (s.Status == api.StatusCommitted || s.Status == api.StatusRejected):
			return s, nil
		case err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotReady):
			// pending or not seen yet by this node: ask again
		case errors.Is(err, ErrUnreachable):
			k++ // try the next node right away
			if k%len(m.nodes) != 0 {
				continue
			}
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("transfer %s: still pending: %w", short(id), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*5/4, time.Second)
	}
}

// Epochs returns the committed validator-set changes node serves
// (GET /v1/validators), unverified.
func (c *Client) Epochs(ctx context.Context) ([]genesis.Epoch, error) {
	var v api.Validators
	if err := c.getJSON(ctx, api.PathValidators, &v); err != nil {
		return nil, err
	}
	out := make([]genesis.Epoch, 0, len(v.Epochs))
	for _, raw := range v.Epochs {
		var e genesis.Epoch
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("node %s served a malformed validator-set change: %w", hostOf(c.base), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// SubmitChange hands a signed validator-set change to one validator, which
// proposes it when its turn comes.
func (c *Client) SubmitChange(ctx context.Context, ch *genesis.Change) (*api.ChangeResponse, error) {
	var r api.ChangeResponse
	b, err := c.do(ctx, http.MethodPost, api.PathValidators, api.ContentJSON, ch.Encode(), api.ContentJSON)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("node %s: %w", hostOf(c.base), err)
	}
	return &r, nil
}

// ErrConflict: the validators serve committee histories that contradict
// each other (client.Current).
var ErrConflict = errors.New("client: conflicting committee histories")

// Current returns a client of the chain's current committee: the genesis
// committee changed by the longest run of committed validator-set changes
// any reachable validator serves that verifies from g (each change signed
// by a quorum of the committee before it). A node can withhold changes,
// not forge one; the committees the changes name are asked too, so one
// honest current validator is enough. Two verified histories that differ
// at some epoch (departed validators forking the history) are an error
// (ErrConflict), never a choice.
func Current(ctx context.Context, g *genesis.Genesis, opts ...Option) (*Multi, error) {
	var best []genesis.Epoch
	asked := map[string]bool{}
	for round := 0; round < 8; round++ {
		var apis []string
		for _, v := range g.At(best).Validators {
			if !asked[v.API] {
				apis = append(apis, v.API)
			}
		}
		if round == 0 {
			for _, v := range g.Validators {
				if !asked[v.API] && !slices.Contains(apis, v.API) {
					apis = append(apis, v.API)
				}
			}
		}
		if len(apis) == 0 {
			break
		}
		answers := make([][]genesis.Epoch, len(apis))
		var wg sync.WaitGroup
		for i, a := range apis {
			asked[a] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				if es, err := New(a, opts...).Epochs(ctx); err == nil && g.VerifyChain(es) == nil {
					answers[i] = es
				}
			}()
		}
		wg.Wait()
		found := false
		for i, es := range answers {
			if es == nil {
				continue
			}
			if e, bad := genesis.Conflict(best, es); bad {
				return nil, fmt.Errorf("%w: validators serve conflicting committee histories from epoch %d (%s among them): a past committee signed two changes; refusing to choose", ErrConflict, e, hostOf(apis[i]))
			}
			if len(es) > len(best) {
				best, found = es, true
			}
		}
		if !found {
			break
		}
	}
	m, err := NewMulti(g.At(best), opts...)
	if err != nil {
		return nil, err
	}
	m.epochs = best
	return m, nil
}

// Epoch is the committee's epoch this client seals to (0: genesis).
func (m *Multi) Epoch() uint64 {
	if len(m.epochs) == 0 {
		return 0
	}
	return m.epochs[len(m.epochs)-1].Change.Epoch
}
