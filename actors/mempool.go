package actors

import (
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/ledger"
)

// Upload is a decoded submission held by the mempool.
type Upload struct {
	Hash     [32]byte
	Raw      []byte // ciphertext bytes as uploaded
	CT       *rlwe.Ciphertext
	Envs     []ledger.Envelope
	Received time.Time
}

// Open is a pending account opening.
type Open struct {
	SignPub []byte
	Kind    ledger.AccountKind
	Sig     []byte
}

type addUpload struct{ U *Upload }
type addOpen struct{ O Open }
type getUpload struct{ Hash [32]byte }
type candidates struct {
	Max    int
	MinAge time.Duration
}
type takeOpens struct{ Max int }
type committed struct {
	Hashes  [][32]byte
	OpenPub [][]byte
}
type mempoolSize struct{}

// mempoolActor owns the transfers waiting to be ordered.
type mempoolActor struct {
	max     int
	uploads map[[32]byte]*Upload
	opens   map[string]Open
	now     func() time.Time
}

func (m *mempoolActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *addUpload:
		_, dup := m.uploads[msg.U.Hash]
		full := len(m.uploads) >= m.max
		if !dup && !full {
			m.uploads[msg.U.Hash] = msg.U
		}
		ctx.Respond(!dup && !full)
	case *addOpen:
		m.opens[string(msg.O.SignPub)] = msg.O
		ctx.Respond(true)
	case *getUpload:
		u, ok := m.uploads[msg.Hash]
		if !ok {
			ctx.Respond((*Upload)(nil))
			return
		}
		ctx.Respond(u)
	case *candidates:
		var out []*Upload
		now := m.now()
		for _, u := range m.uploads {
			if now.Sub(u.Received) >= msg.MinAge {
				out = append(out, u)
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if !out[i].Received.Equal(out[j].Received) {
				return out[i].Received.Before(out[j].Received)
			}
			return string(out[i].Hash[:]) < string(out[j].Hash[:])
		})
		if len(out) > msg.Max {
			out = out[:msg.Max]
		}
		ctx.Respond(out)
	case *takeOpens:
		var out []Open
		keys := make([]string, 0, len(m.opens))
		for k := range m.opens {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if len(out) >= msg.Max {
				break
			}
			out = append(out, m.opens[k])
		}
		ctx.Respond(out)
	case *committed:
		for _, h := range msg.Hashes {
			delete(m.uploads, h)
		}
		for _, p := range msg.OpenPub {
			delete(m.opens, string(p))
		}
	case *mempoolSize:
		ctx.Respond(len(m.uploads))
	}
}

// Mempool is the client of the mempool actor.
type Mempool struct {
	sys *actor.ActorSystem
	pid *actor.PID
}

// NewMempool spawns the mempool actor holding at most max uploads.
func NewMempool(sys *actor.ActorSystem, max int) *Mempool {
	props := actor.PropsFromProducer(func() actor.Actor {
		return &mempoolActor{max: max, uploads: map[[32]byte]*Upload{}, opens: map[string]Open{}, now: time.Now}
	})
	return &Mempool{sys: sys, pid: sys.Root.Spawn(props)}
}

const mempoolTimeout = 10 * time.Second

// Add inserts an upload; false if it was a duplicate or the pool is full.
func (m *Mempool) Add(u *Upload) bool {
	r, err := m.sys.Root.RequestFuture(m.pid, &addUpload{U: u}, mempoolTimeout).Result()
	return err == nil && r.(bool)
}

// AddOpen queues an account opening.
func (m *Mempool) AddOpen(o Open) {
	_, _ = m.sys.Root.RequestFuture(m.pid, &addOpen{O: o}, mempoolTimeout).Result()
}

// Get returns an upload by hash.
func (m *Mempool) Get(hash [32]byte) (*Upload, bool) {
	r, err := m.sys.Root.RequestFuture(m.pid, &getUpload{Hash: hash}, mempoolTimeout).Result()
	if err != nil {
		return nil, false
	}
	u := r.(*Upload)
	return u, u != nil
}

// Candidates returns uploads at least minAge old, oldest first.
func (m *Mempool) Candidates(max int, minAge time.Duration) []*Upload {
	r, err := m.sys.Root.RequestFuture(m.pid, &candidates{Max: max, MinAge: minAge}, mempoolTimeout).Result()
	if err != nil {
		return nil
	}
	return r.([]*Upload)
}

// Opens returns pending openings.
func (m *Mempool) Opens(max int) []Open {
	r, err := m.sys.Root.RequestFuture(m.pid, &takeOpens{Max: max}, mempoolTimeout).Result()
	if err != nil {
		return nil
	}
	return r.([]Open)
}

// Committed drops what a committed block included.
func (m *Mempool) Committed(hashes [][32]byte, opens [][]byte) {
	m.sys.Root.Send(m.pid, &committed{Hashes: hashes, OpenPub: opens})
}

// Size is the number of uploads waiting.
func (m *Mempool) Size() int {
	r, err := m.sys.Root.RequestFuture(m.pid, &mempoolSize{}, mempoolTimeout).Result()
	if err != nil {
		return 0
	}
	return r.(int)
}
