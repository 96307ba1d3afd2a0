package consensus

// voteStatus records what a stored vote counts towards.
type voteStatus uint8

const (
	voteAbsent voteStatus = iota
	// voteCounted: counts towards its BlockID's power.
	voteCounted
	// votePending: a non-nil precommit whose extension waits for the value
	// (a precommit may arrive before the proposal it votes for).
	votePending
	// voteRejected: its extension failed verification.
	voteRejected
)

// voteSet holds one vote type of one round: the first validly signed vote of
// each validator, the power of all of them ("2f+1 ⟨*⟩") and the power per BlockID.
//
// An equivocating validator's further votes are kept in extra and count for
// their own BlockID too, as the paper counts messages: otherwise a byzantine
// validator that sends one prevote to some and another to the rest can lock a
// correct validator on a proof-of-lock that no other correct validator can
// ever complete. Only votes for a value this node holds (or nil) are kept
// there, which bounds them by the proposals of the height.
type voteSet struct {
	votes  []*Vote
	status []voteStatus
	extra  []*Vote // counted; at most one per (validator, BlockID)
	any    int64
	power  map[BlockID]int64
}

// has reports whether validator i already has a vote for id here.
func (vs *voteSet) has(i int, id BlockID) bool {
	if v := vs.get(i); v != nil && v.BlockID == id {
		return true
	}
	for _, v := range vs.extra {
		if v.Validator == i && v.BlockID == id {
			return true
		}
	}
	return false
}

// counted returns validator i's counted vote for id, if any.
func (vs *voteSet) counted(i int, id BlockID) *Vote {
	if v := vs.get(i); v != nil && v.BlockID == id && vs.status[i] == voteCounted {
		return v
	}
	for _, v := range vs.extra {
		if v.Validator == i && v.BlockID == id {
			return v
		}
	}
	return nil
}

func (vs *voteSet) get(i int) *Vote {
	if vs.votes == nil {
		return nil
	}
	return vs.votes[i]
}

func (vs *voteSet) init(n int) {
	if vs.votes == nil {
		vs.votes = make([]*Vote, n)
		vs.status = make([]voteStatus, n)
		vs.power = make(map[BlockID]int64, 2)
	}
}

// roundState is everything known about one round of the current height.
type roundState struct {
	proposals  []*Proposal // from proposer(h, r); a second one only when it equivocated
	prevotes   voteSet
	precommits voteSet
	seen       []bool // validators with any message in this round (line 55)
	seenPower  int64

	// "for the first time" flags of lines 34, 36 and 47.
	prevoteWaitDone   bool
	polDone           bool
	precommitWaitDone bool
}

func (rs *roundState) set(t VoteType) *voteSet {
	if t == Prevote {
		return &rs.prevotes
	}
	return &rs.precommits
}

// maxProposalsPerRound bounds what an equivocating proposer can make us keep.
// The second proposal is kept because the network may decide it; more are
// only evidence, and a node that misses the decided one catches up by Commit.
const maxProposalsPerRound = 2

type valueEntry struct {
	value    []byte
	validity int8 // 0 unknown, 1 valid, -1 invalid: valid(v) is asked once
	refs     int  // proposals holding it; evicted future-round proposals release it
}

type voteKey struct {
	round Round
	typ   VoteType
}

type voteRef struct {
	round     Round
	validator int
}

type evidenceKey struct {
	validator int
	round     Round
	kind      EvidenceKind
	typ       VoteType
}

// heightState is reset at every height.
type heightState struct {
	rounds      map[Round]*roundState
	values      map[BlockID]*valueEntry
	pendingExt  map[BlockID][]voteRef
	ownProposal map[Round]*Proposal
	ownVotes    map[voteKey]*Vote
	// future[i] are the (at most two) rounds above ours in which validator i
	// has messages stored. Keeping only each validator's two highest bounds
	// memory against a byzantine validator spraying rounds, and still keeps
	// every correct validator's latest round for line 55.
	future   [][2]Round
	touched  []Round // rounds with new proposals or votes since run() last looked
	evidence map[evidenceKey]bool
}

func newHeightState(n int) *heightState {
	hs := &heightState{
		rounds:      make(map[Round]*roundState),
		values:      make(map[BlockID]*valueEntry),
		pendingExt:  make(map[BlockID][]voteRef),
		ownProposal: make(map[Round]*Proposal),
		ownVotes:    make(map[voteKey]*Vote),
		future:      make([][2]Round, n),
		evidence:    make(map[evidenceKey]bool),
	}
	for i := range hs.future {
		hs.future[i] = [2]Round{NoRound, NoRound}
	}
	return hs
}
