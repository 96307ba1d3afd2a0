package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
)

// The dashboard's event stream, GET /v1/events (docs/API.md, "Dashboard
// and events"). The chain observer hands each finalized view to a worker
// with a non-blocking send (the consensus actor never waits on it); the
// worker renders a "height" event and offers it to every subscriber, again
// without blocking: a subscriber whose buffer is full misses that event.
const (
	maxEventSubscribers = 64               // per node; more are answered 429
	eventBuffer         = 32               // events queued per subscriber
	eventMaxEntries     = 256              // envelopes or outcomes per height event
	statusEvery         = 2 * time.Second  // the "status" event's period
	heartbeatEvery      = 15 * time.Second // an SSE comment keeps proxies from closing the stream
)

// eventHub fans finalized heights out to the event-stream subscribers. Its
// zero value is ready; the worker starts with the first view.
type eventHub struct {
	mu     sync.Mutex
	subs   map[chan []byte]struct{}
	views  chan *chain.View
	closed chan struct{}
	once   sync.Once
	// credits are recent views' credits by height (worker only): the
	// proposer of height h ran on the credits of height h-1.
	credits map[uint64][]int64
}

func (e *eventHub) init() {
	e.once.Do(func() {
		e.subs = map[chan []byte]struct{}{}
		e.views = make(chan *chain.View, 16)
		e.closed = make(chan struct{})
		e.credits = map[uint64][]int64{}
	})
}

// publishEvent hands v to the worker; it never blocks (a view the worker has no
// room for is skipped: the next one carries the newest state).
func (n *Node) publishEvent(v *chain.View) {
	e := &n.events
	e.init()
	select {
	case e.views <- v:
	default:
	}
	n.eventsWorker.Do(func() { go n.runEvents() })
}

// close ends every stream (the API server is shutting down).
func (e *eventHub) close() {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-e.closed:
	default:
		close(e.closed)
	}
}

func (n *Node) runEvents() {
	e := &n.events
	done := n.ctx
	if done == nil {
		done = context.Background()
	}
	for {
		select {
		case <-done.Done():
			return
		case <-e.closed:
			return
		case v := <-e.views:
			e.credits[v.Height] = append([]int64{}, v.Credits...)
			delete(e.credits, v.Height-3)
			if e.subscribers() == 0 {
				continue // nobody to render it for
			}
			b, err := json.Marshal(n.heightEvent(v))
			if err != nil {
				n.log.Error("rendering a height event", "height", v.Height, "err", err)
				continue
			}
			e.broadcast(sseFrame("height", b))
		}
	}
}

// broadcast offers frame to every subscriber without blocking.
func (e *eventHub) broadcast(frame []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- frame:
		default: // slow subscriber: it misses this one
		}
	}
}

// subscribe registers a subscriber, or reports false past the cap.
func (e *eventHub) subscribe() (chan []byte, bool) {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.subs) >= maxEventSubscribers {
		return nil, false
	}
	ch := make(chan []byte, eventBuffer)
	e.subs[ch] = struct{}{}
	return ch, true
}

func (e *eventHub) unsubscribe(ch chan []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.subs, ch)
}

func (e *eventHub) subscribers() int {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}

func sseFrame(event string, data []byte) []byte {
	return fmt.Appendf(nil, "event: %s\ndata: %s\n\n", event, data)
}

// heightEvent renders v (worker goroutine: it may ask the mempool actor).
func (n *Node) heightEvent(v *chain.View) api.HeightEvent {
	e := &n.events
	ev := api.HeightEvent{Height: v.Height, AppliedHeight: v.Book.Height(), Credits: append([]int64{}, v.Credits...),
		Proposer: -1, Outcomes: []api.EventOutcome{}, Block: api.EventBlock{Height: v.Height, Transfers: []api.EventEnvelope{}}}
	var st api.Status
	n.epochStatus(&st, v)
	ev.Epoch = st.Epoch
	c, rj, tps, fin := n.tracker.rates()
	ev.Committed, ev.Rejected, ev.TPS, ev.FinalityMs = c, rj, tps, float64(fin)/float64(time.Millisecond)
	if n.mem != nil {
		if size, err := n.mem.Size(); err == nil {
			ev.Mempool = size
		}
	}
	if b := v.Block; b != nil {
		if len(b.LastCommit) > 0 && v.Height >= 2 {
			r := decidedRound(b.LastCommit)
			ev.Round, ev.ProposerHeight = uint32(r), v.Height-1
			if cr, ok := e.credits[v.Height-2]; ok && len(cr) == len(v.Credits) {
				ev.Proposer = proposerByCredits(cr, v.Height-1, r)
			}
		}
		for _, sub := range b.Subs {
			for i := range sub.Envelopes {
				if len(ev.Block.Transfers) >= eventMaxEntries {
					ev.Block.TransfersOmitted++
					continue
				}
				ev.Block.Transfers = append(ev.Block.Transfers, eventEnvelope(&sub.Envelopes[i]))
			}
		}
		ev.Block.Opens, ev.Block.Consents = len(b.Opens), len(b.Consents)
	}
	for _, o := range v.Outcomes {
		if len(ev.Outcomes) >= eventMaxEntries {
			ev.OutcomesOmitted++
			continue
		}
		out := api.EventOutcome{ID: hex.EncodeToString(o.ID[:]), Status: api.StatusCommitted, Code: o.Reason.Code()}
		if o.Reason != ledger.Accepted {
			out.Status = api.StatusRejected
		}
		ev.Outcomes = append(ev.Outcomes, out)
	}
	return ev
}

// decidedRound is the round most of a commit certificate's precommits were
// cast in (they are all of one round in a regular commit).
func decidedRound(pcs []chain.Precommit) consensus.Round {
	count := map[consensus.Round]int{}
	best, bestN := consensus.Round(0), 0
	for _, p := range pcs {
		count[p.Round]++
		if count[p.Round] > bestN || (count[p.Round] == bestN && p.Round < best) {
			best, bestN = p.Round, count[p.Round]
		}
	}
	return best
}

func eventEnvelope(env *ledger.Envelope) api.EventEnvelope {
	id := env.ID()
	out := api.EventEnvelope{ID: hex.EncodeToString(id[:]), From: env.From.String(), To: env.To.String(), Payees: 1 + len(env.More), Kind: "pay"}
	var st api.TransferStatus
	setLending(&st, env)
	switch {
	case st.Kind != "":
		out.Kind = st.Kind
	case env.IsApply():
		out.Kind, out.Payees = "apply", 0
	}
	return out
}

// events serves GET /v1/events: a "status" event at once and every
// statusEvery, a "height" event per finalized height, a comment every
// heartbeatEvery; it ends when the client goes or the server shuts down.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeErr(w, http.StatusInternalServerError, "no_stream", "this connection cannot stream")
		return
	}
	e := &s.n.events
	ch, ok := e.subscribe()
	if !ok {
		writeErr(w, http.StatusTooManyRequests, "too_many_subscribers", fmt.Sprintf("at most %d event streams per node", maxEventSubscribers))
		return
	}
	defer e.unsubscribe(ch)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	status := func() bool {
		b, _ := json.Marshal(s.statusNow())
		_, err := w.Write(sseFrame("status", b))
		fl.Flush()
		return err == nil
	}
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil || !status() {
		return
	}
	st, hb := time.NewTicker(statusEvery), time.NewTicker(heartbeatEvery)
	defer st.Stop()
	defer hb.Stop()
	done := s.n.ctx
	if done == nil {
		done = context.Background()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-done.Done():
			return
		case <-e.closed:
			return
		case frame := <-ch:
			if _, err := w.Write(frame); err != nil {
				return
			}
			fl.Flush()
		case <-st.C:
			if !status() {
				return
			}
		case <-hb.C:
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// statusNow is GET /v1/status's answer.
func (s *server) statusNow() api.Status {
	if s.n.full != nil {
		return withVersion(s.n.fullStatus())
	}
	st := withVersion(s.n.Status())
	st.Role, st.VerifiedHeight = RoleValidator, st.Height
	return st
}

// proposerByCredits is chain.ProposerByCredits: the proposer of (h, r)
// over credits cr (the credits of height h-1), for display.
func proposerByCredits(cr []int64, h uint64, r consensus.Round) int {
	return chain.ProposerByCredits(cr, h, r)
}
