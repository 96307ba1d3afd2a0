package consensus

import "fmt"

// WALRecordKind says what a record holds.
type WALRecordKind uint8

// Record kinds; the values are part of the record encoding.
const (
	// RecordProposal: a proposal this validator signed. Durable before it is sent,
	// so that a restart re-sends it instead of proposing something else.
	RecordProposal WALRecordKind = 1
	// RecordVote: a vote this validator signed (with its extension). Durable
	// before it is sent; after a restart the machine re-sends it and never
	// signs another vote of the same height, round and type.
	RecordVote WALRecordKind = 2
	// RecordValid: the proposal whose value became validValue (and, with a
	// non-nil precommit, lockedValue) at Algorithm 1 line 36. It restores the
	// value bytes a restarted proposer must re-propose (line 15).
	RecordValid WALRecordKind = 3
)

// WALRecord is one record the driver must make durable before sending the
// messages of the same Ready. The machine writes no files: the driver appends
// EncodeWALRecord(r) to its log and passes the decoded records back to
// NewMachine after a restart. Records of heights below the node's next
// height may be deleted.
type WALRecord struct {
	Kind     WALRecordKind
	Proposal *Proposal // RecordProposal, RecordValid
	Vote     *Vote     // RecordVote
}

// Height is the height the record belongs to.
func (r WALRecord) Height() uint64 {
	if r.Vote != nil {
		return r.Vote.Height
	}
	if r.Proposal != nil {
		return r.Proposal.Height
	}
	return 0
}

// EncodeWALRecord returns the record's bytes: its kind then the message encoding.
func EncodeWALRecord(r WALRecord) []byte {
	var m Message = r.Proposal
	if r.Kind == RecordVote {
		m = r.Vote
	}
	b := make([]byte, 1, 1+encodedSize(m))
	b[0] = byte(r.Kind)
	return AppendMessage(b, m)
}

// DecodeWALRecord decodes EncodeWALRecord's output; like DecodeMessage it aliases b.
func DecodeWALRecord(b []byte) (WALRecord, error) {
	if len(b) < 1 {
		return WALRecord{}, fmt.Errorf("%w: empty WAL record", ErrMalformed)
	}
	m, err := DecodeMessage(b[1:])
	if err != nil {
		return WALRecord{}, err
	}
	r := WALRecord{Kind: WALRecordKind(b[0])}
	switch x := m.(type) {
	case *Proposal:
		if r.Kind != RecordProposal && r.Kind != RecordValid {
			return WALRecord{}, fmt.Errorf("%w: WAL record kind %d holds a proposal", ErrMalformed, r.Kind)
		}
		r.Proposal = x
	case *Vote:
		if r.Kind != RecordVote {
			return WALRecord{}, fmt.Errorf("%w: WAL record kind %d holds a vote", ErrMalformed, r.Kind)
		}
		r.Vote = x
	default:
		return WALRecord{}, fmt.Errorf("%w: WAL record holds a %T", ErrMalformed, m)
	}
	return r, nil
}
