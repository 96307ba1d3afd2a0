package chain

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// The persistence schema (docs/ARCHITECTURE.md, "What a block stores"): one
// atomic store commit per finalized height holds the block value (envelopes
// and upload hashes, the previous height's extensions), its commit
// certificate, the shard states the block's decisions produced, the transfer
// statuses, the account registry and work credits, the uploads it
// references and the piece ciphertexts this validator computed for it or
// used to evaluate the block before (both kept UploadRetention heights so a
// restarted or lagging validator can re-evaluate them; then deleted in a
// later commit, pieces through a per-height index).

const (
	metaAccounts = "accounts"
	metaCredits  = "credits"
	metaPending  = "setchange" // the pending validator-set change (JSON), empty if none
	metaApplied  = "applied"
	metaShards   = "shards"
	pruneEvery   = 16
)

// UploadRetention is how many heights an upload is kept after its block
// (the default of Config.UploadRetention). Lagging validators re-evaluate
// every block they catch up on, so they need its uploads from a peer; a
// validator offline for longer than this restores a state snapshot first
// (chain/snapshot.go).
const UploadRetention = 1024

func uploadKey(h [32]byte) string { return "upload/" + hex.EncodeToString(h[:]) }

// StoredUpload returns the raw ciphertext of an upload kept with its block.
func StoredUpload(st Store, h [32]byte) ([]byte, error) { return st.GetMeta(uploadKey(h)) }

// StatusRecord is a stored transfer status.
type StatusRecord struct {
	ID      string   `json:"id"`
	Status  string   `json:"status"`
	Code    string   `json:"code,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Height  uint64   `json:"height"`
	Decided uint64   `json:"decided"`
	From    string   `json:"from"`
	To      string   `json:"to"`
	Payees  []string `json:"payees,omitempty"` // a pay-many's payees (To is the first)
	// Lending operations (ledger/lending.go): Kind is "check", "fund" or
	// "repay" (empty for a payment or an apply); Min and Policy are a
	// check's, Due and Application a loan's, Loan a repayment's.
	Kind        string   `json:"kind,omitempty"`
	Min         uint64   `json:"min,omitempty"`
	Policy      string   `json:"policy,omitempty"`
	Due         []uint64 `json:"due,omitempty"`
	Application string   `json:"application,omitempty"`
	Loan        string   `json:"loan,omitempty"`
}

// SetLending fills a record's lending fields from its envelope.
func (r *StatusRecord) SetLending(e *ledger.Envelope) {
	switch e.Kind {
	case ledger.OpCheck:
		r.Kind, r.Min, r.Policy = e.Kind.String(), e.Min, hex.EncodeToString(e.Policy[:])
	case ledger.OpFund:
		r.Kind, r.Due, r.Application = e.Kind.String(), append([]uint64(nil), e.Due...), hex.EncodeToString(e.Loan[:])
	case ledger.OpRepay:
		r.Kind, r.Loan = e.Kind.String(), hex.EncodeToString(e.Loan[:])
	}
}

// PayeeStrings returns a pay-many's payees as hex ids (nil for any other
// operation).
func PayeeStrings(e *ledger.Envelope) []string {
	if !e.IsMany() {
		return nil
	}
	var out []string
	for _, p := range e.Payees() {
		out = append(out, p.String())
	}
	return out
}

// StoredStatus returns the persisted status of a decided transfer.
func StoredStatus(st Store, id [32]byte) (StatusRecord, error) {
	var rec StatusRecord
	b, err := st.Status(id[:])
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("%w: status record: %w", store.ErrCorrupt, err)
	}
	return rec, nil
}

// StoredCommit returns the decision of height h: its block and certificate.
func StoredCommit(st Store, h uint64) (*consensus.Commit, error) {
	value, err := st.Block(h)
	if err != nil {
		return nil, err
	}
	cb, err := st.Cert(h)
	if err != nil {
		return nil, err
	}
	msg, err := consensus.DecodeMessage(cb)
	if err != nil {
		return nil, fmt.Errorf("stored certificate of height %d: %w", h, err)
	}
	cm, ok := msg.(*consensus.Commit)
	if !ok {
		return nil, fmt.Errorf("stored certificate of height %d is not a commit", h)
	}
	cm.Value = value
	return cm, nil
}

func encodeCert(cert *consensus.CommitCertificate) []byte {
	if cert == nil {
		return nil
	}
	return consensus.EncodeMessage(&consensus.Commit{Cert: cert, Value: []byte{}})
}

// heightRecord is everything one finalized height makes durable.
type heightRecord struct {
	height   uint64
	value    []byte
	cert     *consensus.CommitCertificate
	book     *ledger.Book // after deciding height-1 and opening this block's accounts
	outcomes []ledger.Outcome
	uploads  []*Upload
	credits  []int64
	pieces   map[[32]byte][]byte // piece ciphertexts to keep (own, and decided ones used)
	pending  *PendingChange      // the committed change not yet in force, if any

	retention uint64              // UploadRetention, or the configured one
	snapshot  *SnapshotInfo       // the snapshot of this height, if one was produced
	chunks    map[[32]byte][]byte // its chunks
}

// lag is how many heights after its block a height's results are applied:
// the book persisted with block h holds results through h-lag, and the
// states of book height x are stored with block x+lag.
const lag = 2

// batch is the store commit of a height, without the deletions that depend
// on what is already stored.
func (r *heightRecord) batch() (store.Batch, error) {
	batch := store.Batch{Block: r.value, Cert: encodeCert(r.cert)}
	applied := r.book.Height()
	if applied > 0 {
		for shard, ct := range r.book.StatesAt(applied) {
			b, err := ct.MarshalBinary()
			if err != nil {
				return batch, err
			}
			batch.States = append(batch.States, store.ShardState{Shard: shard, Data: b}) // stored at block height applied+lag
		}
	}
	for _, o := range r.outcomes {
		rec := StatusRecord{ID: hex.EncodeToString(o.ID[:]), Status: "committed", Height: applied, Decided: r.height}
		if o.Reason != ledger.Accepted {
			rec.Status, rec.Code, rec.Reason = "rejected", o.Reason.Code(), o.Reason.String()
		}
		if o.Env != nil {
			rec.From, rec.To, rec.Payees = o.Env.From.String(), o.Env.To.String(), PayeeStrings(o.Env)
			rec.SetLending(o.Env)
		}
		b, _ := json.Marshal(rec)
		batch.Statuses = append(batch.Statuses, store.Record{Key: o.ID[:], Value: b})
	}
	var accts [][]byte
	for _, a := range r.book.Accounts() {
		b, _ := a.MarshalBinary()
		accts = append(accts, b)
	}
	ab, _ := json.Marshal(accts)
	cb, _ := json.Marshal(r.credits)
	var ap [8]byte
	binary.BigEndian.PutUint64(ap[:], applied)
	shards, _ := json.Marshal(r.book.Shards())
	batch.Meta = append(batch.Meta,
		store.Record{Key: []byte(metaAccounts), Value: ab},
		store.Record{Key: []byte(metaCredits), Value: cb},
		store.Record{Key: []byte(metaPending), Value: encodePending(r.pending)},
		store.Record{Key: []byte(metaApplied), Value: ap[:]},
		store.Record{Key: []byte(metaShards), Value: shards})
	for _, u := range r.uploads {
		if u != nil && u.Raw != nil {
			batch.Meta = append(batch.Meta, store.Record{Key: []byte(uploadKey(u.Hash)), Value: u.Raw})
		}
	}
	hashes := make([][32]byte, 0, len(r.pieces))
	for h := range r.pieces {
		hashes = append(hashes, h)
	}
	sort.Slice(hashes, func(i, j int) bool { return bytes.Compare(hashes[i][:], hashes[j][:]) < 0 })
	var idx []byte
	for _, h := range hashes {
		idx = append(idx, h[:]...) // the blobs themselves are written before the commit (persistHeight)
	}
	if len(idx) > 0 {
		batch.Meta = append(batch.Meta, store.Record{Key: []byte(pieceIndexKey(r.height)), Value: idx})
	}
	return batch, nil
}

// persistHeight commits a finalized height atomically; every pruneEvery
// heights it then drops shard states older than the book's window.
func persistHeight(st Store, r *heightRecord) error {
	batch, err := r.batch()
	if err != nil {
		return err
	}
	// Piece ciphertexts are blobs, written (synced) before the commit that
	// indexes them, and deleted after the commit that drops their index: a
	// crash in between leaves an unindexed blob, never an index without
	// its blob.
	if err := st.PutBlobs(r.pieces); err != nil {
		return err
	}
	var dropChunks [][32]byte
	if r.snapshot != nil { // chunks are blobs too, written before their record
		if err := st.PutBlobs(r.chunks); err != nil {
			return err
		}
		dropChunks = snapshotBatch(st, r.snapshot, &batch)
	}
	retention := r.retention
	if retention == 0 {
		retention = UploadRetention
	}
	var drop [][32]byte
	if h := r.height; h > retention {
		// The uploads and pieces of block h-retention leave in the same
		// write.
		old := h - retention
		if ob, err := st.Block(old); err == nil {
			if ob, err := DecodeBlock(ob); err == nil {
				for _, s := range ob.Subs {
					batch.DeleteMeta = append(batch.DeleteMeta, []byte(uploadKey(s.CTHash)))
				}
			}
		}
		if idx, err := st.GetMeta(pieceIndexKey(old)); err == nil {
			for i := 0; i+32 <= len(idx); i += 32 {
				var ph [32]byte
				copy(ph[:], idx[i:])
				drop = append(drop, ph)
			}
			batch.DeleteMeta = append(batch.DeleteMeta, []byte(pieceIndexKey(old)))
		}
	}
	if err := st.Commit(r.height, batch); err != nil {
		return err
	}
	for _, ph := range append(drop, dropChunks...) {
		if err := st.DeleteBlob(ph); err != nil {
			return err
		}
	}
	if applied := r.book.Height(); r.height%pruneEvery == 0 && applied > ledger.StateWindow {
		return prune(st, r.book, applied)
	}
	return nil
}

// prune drops states older than the window, after re-saving every shard's
// newest state at the window's start so idle shards keep theirs.
func prune(st Store, book *ledger.Book, applied uint64) error {
	keepFrom := applied - ledger.StateWindow + 1 // book height; stored at keepFrom+lag
	for _, s := range book.Shards() {
		if _, err := st.State(keepFrom+lag, s); err == nil {
			continue
		}
		ct, ok := book.State(s, keepFrom)
		if !ok {
			continue
		}
		b, err := ct.MarshalBinary()
		if err != nil {
			return err
		}
		if err := st.PutState(keepFrom+lag, s, b); err != nil {
			return err
		}
	}
	return st.Prune(keepFrom + lag)
}

// Restored is what an App resumes from.
type Restored struct {
	Finalized uint64
	Book      *ledger.Book // results applied up to Finalized-2
	LastBlock []byte
	PrevBlock []byte            // block Finalized-1 (nil if Finalized is 1)
	Last      *consensus.Commit // decision of Finalized (nil at genesis)
	Credits   []int64
	Pending   *PendingChange // a committed validator-set change, possibly in force by now
}

// Restore reads the last finalized height's state from st. An empty store
// restores the genesis book.
func Restore(st Store, p *ledger.Params, eng *ledger.Engine, chainID string, genesisBook *ledger.Book) (*Restored, error) {
	r := &Restored{Book: genesisBook}
	last, err := st.LastApplied()
	if err != nil || last == 0 {
		return r, err
	}
	r.Finalized = last
	if r.Last, err = StoredCommit(st, last); err != nil {
		return nil, err
	}
	r.LastBlock = r.Last.Value
	if last > 1 {
		if r.PrevBlock, err = st.Block(last - 1); err != nil {
			return nil, fmt.Errorf("chain: block %d: %w", last-1, err)
		}
	}
	if b, err := st.GetMeta(metaCredits); err == nil {
		if err := json.Unmarshal(b, &r.Credits); err != nil {
			return nil, fmt.Errorf("%w: credits: %w", store.ErrCorrupt, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if b, err := st.GetMeta(metaPending); err == nil && len(b) > 0 {
		r.Pending = new(PendingChange)
		if err := json.Unmarshal(b, r.Pending); err != nil {
			return nil, fmt.Errorf("%w: pending validator-set change: %w", store.ErrCorrupt, err)
		}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	ab, err := st.GetMeta(metaAccounts)
	if err != nil {
		return nil, err
	}
	var raw [][]byte
	if err := json.Unmarshal(ab, &raw); err != nil {
		return nil, fmt.Errorf("%w: accounts: %w", store.ErrCorrupt, err)
	}
	ap, err := st.GetMeta(metaApplied)
	if err != nil {
		return nil, err
	}
	if len(ap) != 8 {
		return nil, fmt.Errorf("%w: applied height of %d bytes", store.ErrCorrupt, len(ap))
	}
	applied := binary.BigEndian.Uint64(ap)
	snap := genesisBook.Snapshot()
	snap.Height = applied
	snap.Accounts = nil
	for _, b := range raw {
		a := &ledger.Account{}
		if err := a.UnmarshalBinary(b); err != nil {
			return nil, err
		}
		snap.Accounts = append(snap.Accounts, a)
	}
	var shards []uint32
	if b, err := st.GetMeta(metaShards); err == nil {
		if err := json.Unmarshal(b, &shards); err != nil {
			return nil, fmt.Errorf("%w: shards: %w", store.ErrCorrupt, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	from := uint64(1)
	if applied > 2*ledger.StateWindow {
		from = applied - 2*ledger.StateWindow
	}
	for _, s := range shards {
		if snap.States[s] == nil {
			snap.States[s] = map[uint64]*rlwe.Ciphertext{}
			if st0, ok := genesisBook.State(s, 0); ok {
				snap.States[s][0] = st0
			}
		}
		for h := from; h <= applied; h++ {
			b, err := st.State(h+lag, s) // states of book height h are stored at block height h+lag
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			ct, err := p.DecodeState(b)
			if err != nil {
				return nil, err
			}
			snap.States[s][h] = ct
		}
	}
	book, err := ledger.RestoreBook(eng, chainID, snap)
	if err != nil {
		return nil, err
	}
	// The score weights are the chain's (genesis), not the snapshot's.
	if err := book.SetScoreParams(genesisBook.ScoreParams()); err != nil {
		return nil, err
	}
	r.Book = book
	return r, nil
}

// encodePending is the stored form of a pending change (empty for none).
func encodePending(p *PendingChange) []byte {
	if p == nil {
		return []byte{}
	}
	b, _ := json.Marshal(p)
	return b
}
