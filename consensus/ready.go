package consensus

// Broadcast is Envelope.To for a message to every other validator.
const Broadcast = -1

// Envelope is a message to send: to one validator index, or Broadcast.
type Envelope struct {
	To  int
	Msg Message
}

// CommitRequest says that validator Validator is working on Height, which this
// node decided long ago: the driver should send it the Commit for Height from
// its block store. (The machine answers for the previous height itself.)
type CommitRequest struct {
	Validator int
	Height    uint64
}

// Ready is what the driver must do, in this order:
//  1. make Persist durable (fsync) — before sending anything of this or a later Ready;
//  2. send Send;
//  3. schedule Timeouts (each fires once, as Step(req.Event));
//  4. take note of Committed (already passed to Application.Finalize), keep
//     Evidence, serve CommitRequests;
//
// then call Advance.
type Ready struct {
	Persist   []WALRecord
	Send      []Envelope
	Timeouts  []TimeoutRequest
	Committed []*Commit
	Evidence  []Evidence
	Serve     []CommitRequest
}

// IsEmpty reports whether there is nothing to do.
func (rd *Ready) IsEmpty() bool {
	return len(rd.Persist) == 0 && len(rd.Send) == 0 && len(rd.Timeouts) == 0 &&
		len(rd.Committed) == 0 && len(rd.Evidence) == 0 && len(rd.Serve) == 0
}

type readyMark struct{ persist, send, timeouts, committed, evidence, serve int }

func (rd *Ready) mark() readyMark {
	return readyMark{len(rd.Persist), len(rd.Send), len(rd.Timeouts), len(rd.Committed), len(rd.Evidence), len(rd.Serve)}
}

// drop removes the first k of s without letting later appends write into a
// slice the driver may still hold.
func drop[T any](s []T, k int) []T {
	if k >= len(s) {
		return nil
	}
	return append([]T(nil), s[k:]...)
}

func (rd *Ready) advance(m readyMark) {
	rd.Persist = drop(rd.Persist, m.persist)
	rd.Send = drop(rd.Send, m.send)
	rd.Timeouts = drop(rd.Timeouts, m.timeouts)
	rd.Committed = drop(rd.Committed, m.committed)
	rd.Evidence = drop(rd.Evidence, m.evidence)
	rd.Serve = drop(rd.Serve, m.serve)
}
