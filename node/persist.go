package node

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/actors"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// What a block stores durably (docs/ARCHITECTURE.md, "What a block stores"):
// the block value (envelopes and ciphertext hashes, the previous height's
// extensions), its commit certificate, the shard states the block's
// decisions produced, the transfer statuses, the account registry and work
// credits, and the uploads it references (kept for stateWindow heights so a
// restarted node can re-evaluate them; then pruned).

const (
	metaAccounts = "accounts"
	metaCredits  = "credits"
	metaApplied  = "applied"
	metaShards   = "shards"
	pruneEvery   = 16
)

func uploadKey(h [32]byte) string { return "upload/" + hex.EncodeToString(h[:]) }

// StatusRecord is a stored transfer status.
type StatusRecord struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Code    string `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Height  uint64 `json:"height"`
	Decided uint64 `json:"decided"`
	From    string `json:"from"`
	To      string `json:"to"`
}

type persister struct {
	st *actors.Store
	p  *ledger.Params
}

func encodeCert(cert *consensus.CommitCertificate) []byte {
	if cert == nil {
		return nil
	}
	return consensus.EncodeMessage(&consensus.Commit{Cert: cert, Value: []byte{}})
}

// UploadRetention is how many heights an upload is kept after its block.
// Lagging validators re-evaluate every block they catch up on, so they need
// its uploads from a peer; a validator offline for longer than this needs a
// state snapshot instead (not implemented yet: see docs/OPERATIONS.md).
const UploadRetention = 1024

func (ps *persister) PersistHeight(h uint64, value []byte, cert *consensus.CommitCertificate, book *ledger.Book, applied uint64, outcomes []ledger.Outcome, opened []*ledger.Account, uploads []*Upload, credits []int64) error {
	batch := store.Batch{Block: value, Cert: encodeCert(cert)}
	if applied > 0 {
		for shard, ct := range book.StatesAt(applied) {
			b, err := ct.MarshalBinary()
			if err != nil {
				return err
			}
			batch.States = append(batch.States, store.ShardState{Shard: shard, Data: b}) // stored at block height h = applied+1
		}
	}
	for _, o := range outcomes {
		rec := StatusRecord{ID: hex.EncodeToString(o.ID[:]), Status: "committed", Height: applied, Decided: h}
		if o.Reason != ledger.Accepted {
			rec.Status, rec.Code, rec.Reason = "rejected", o.Reason.Code(), o.Reason.String()
		}
		if o.Env != nil {
			rec.From, rec.To = o.Env.From.String(), o.Env.To.String()
		}
		b, _ := json.Marshal(rec)
		batch.Statuses = append(batch.Statuses, store.Record{Key: o.ID[:], Value: b})
	}
	var accts [][]byte
	for _, a := range book.Accounts() {
		b, _ := a.MarshalBinary()
		accts = append(accts, b)
	}
	ab, _ := json.Marshal(accts)
	cb, _ := json.Marshal(credits)
	var ap [8]byte
	binary.BigEndian.PutUint64(ap[:], applied)
	shards, _ := json.Marshal(book.Shards())
	batch.Meta = append(batch.Meta,
		store.Record{Key: []byte(metaAccounts), Value: ab},
		store.Record{Key: []byte(metaCredits), Value: cb},
		store.Record{Key: []byte(metaApplied), Value: ap[:]},
		store.Record{Key: []byte(metaShards), Value: shards})
	for _, u := range uploads {
		if u != nil && u.Raw != nil {
			batch.Meta = append(batch.Meta, store.Record{Key: []byte(uploadKey(u.Hash)), Value: u.Raw})
		}
	}
	return ps.st.Do(func(db store.Backend) error {
		if h > UploadRetention {
			// The uploads of block h-UploadRetention leave in the same write.
			if old, err := db.Block(h - UploadRetention); err == nil {
				if ob, err := DecodeBlock(old); err == nil {
					for _, s := range ob.Subs {
						batch.DeleteMeta = append(batch.DeleteMeta, []byte(uploadKey(s.CTHash)))
					}
				}
			}
		}
		if err := db.Commit(h, batch); err != nil {
			return err
		}
		if h%pruneEvery == 0 && applied > ledger.DefaultWindow {
			return ps.prune(db, book, applied)
		}
		return nil
	})
}

// prune drops states older than the window, after re-saving every shard's
// newest state at the window's start so idle shards keep theirs.
func (ps *persister) prune(db store.Backend, book *ledger.Book, applied uint64) error {
	keepFrom := applied - ledger.DefaultWindow + 1 // book height; stored at keepFrom+1
	for _, s := range book.Shards() {
		if _, err := db.State(keepFrom+1, s); err == nil {
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
		if err := db.PutState(keepFrom+1, s, b); err != nil {
			return err
		}
	}
	return db.Prune(keepFrom + 1)
}

// restored is what a node resumes from.
type restored struct {
	finalized uint64
	book      *ledger.Book
	lastBlock []byte
	last      *consensus.Commit
	credits   []int64
	wal       []consensus.WALRecord
}

func restore(st *actors.Store, p *ledger.Params, eng *ledger.Engine, chain string, genesisBook *ledger.Book) (*restored, error) {
	r := &restored{book: genesisBook}
	err := st.Do(func(db store.Backend) error {
		recs, err := db.Records()
		if err != nil {
			return err
		}
		for _, b := range recs {
			w, err := consensus.DecodeWALRecord(b)
			if err != nil {
				return fmt.Errorf("WAL: %w", err)
			}
			r.wal = append(r.wal, w)
		}
		last, err := db.LastApplied()
		if err != nil || last == 0 {
			return err
		}
		r.finalized = last
		if r.lastBlock, err = db.Block(last); err != nil {
			return err
		}
		cb, err := db.Cert(last)
		if err != nil {
			return err
		}
		msg, err := consensus.DecodeMessage(cb)
		if err != nil {
			return fmt.Errorf("stored certificate: %w", err)
		}
		cm, ok := msg.(*consensus.Commit)
		if !ok {
			return errors.New("stored certificate is not a commit")
		}
		cm.Value = r.lastBlock
		r.last = cm
		if b, err := db.GetMeta(metaCredits); err == nil {
			_ = json.Unmarshal(b, &r.credits)
		}
		ab, err := db.GetMeta(metaAccounts)
		if err != nil {
			return err
		}
		var raw [][]byte
		if err := json.Unmarshal(ab, &raw); err != nil {
			return err
		}
		ap, err := db.GetMeta(metaApplied)
		if err != nil {
			return err
		}
		applied := binary.BigEndian.Uint64(ap)
		snap := genesisBook.Snapshot()
		snap.Height = applied
		snap.Accounts = nil
		for _, b := range raw {
			a := &ledger.Account{}
			if err := a.UnmarshalBinary(b); err != nil {
				return err
			}
			snap.Accounts = append(snap.Accounts, a)
		}
		var shards []uint32
		if b, err := db.GetMeta(metaShards); err == nil {
			_ = json.Unmarshal(b, &shards)
		}
		from := uint64(1)
		if applied > 2*ledger.DefaultWindow {
			from = applied - 2*ledger.DefaultWindow
		}
		for _, s := range shards {
			if snap.States[s] == nil {
				snap.States[s] = map[uint64]*rlwe.Ciphertext{}
				if st0, ok := genesisBook.State(s, 0); ok {
					snap.States[s][0] = st0
				}
			}
			for h := from; h <= applied; h++ {
				b, err := db.State(h+1, s) // states of book height h are stored at block height h+1
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				ct, err := p.DecodeState(b)
				if err != nil {
					return err
				}
				snap.States[s][h] = ct
			}
			if len(snap.States[s]) == 0 { // opened after genesis and never changed
				ct, ok := genesisBook.State(s, 0)
				if !ok {
					ct = nil
				}
				if ct != nil {
					snap.States[s][0] = ct
				}
			}
		}
		book, err := ledger.RestoreBook(eng, chain, snap)
		if err != nil {
			return err
		}
		r.book = book
		return nil
	})
	return r, err
}
