package consensus

// restore rebuilds a height from this validator's own records after a
// restart. The votes and proposals it signed count again and will be re-sent
// rather than re-signed (castVote, propose); the lock is that of its highest
// non-nil precommit (line 38 sets the lock exactly when it precommits), and
// the value bytes come from the RecordValid written just before.
func (m *Machine) restore(recs []WALRecord) {
	round := Round(0)
	lockRound, lockID := NoRound, NilBlockID
	var valid *Proposal
	for _, r := range recs {
		switch r.Kind {
		case RecordProposal:
			p := r.Proposal
			if m.hs.ownProposal[p.Round] != nil {
				continue
			}
			m.hs.ownProposal[p.Round] = p
			if rs := m.roundState(p.Round); !hasProposal(rs, p) {
				m.addProposal(rs, p)
			}
			round = max(round, p.Round)
		case RecordVote:
			v := r.Vote
			k := voteKey{v.Round, v.Type}
			if m.hs.ownVotes[k] != nil {
				continue
			}
			m.hs.ownVotes[k] = v
			if v.Type == Precommit && !v.BlockID.IsNil() && v.Round > lockRound {
				lockRound, lockID = v.Round, v.BlockID
			}
			round = max(round, v.Round)
		case RecordValid:
			p := r.Proposal
			if rs := m.roundState(p.Round); !hasProposal(rs, p) {
				m.addProposal(rs, p)
			}
			if valid == nil || p.Round > valid.Round {
				valid = p
			}
		}
	}
	// Votes are added after all values are known so that our own precommit
	// finds its value; own votes count without extension checks.
	for _, r := range recs {
		if r.Kind == RecordVote && m.hs.ownVotes[voteKey{r.Vote.Round, r.Vote.Type}] == r.Vote {
			m.addVote(m.roundState(r.Vote.Round), r.Vote, true)
		}
	}
	if lockRound != NoRound {
		m.lockedRound, m.lockedID = lockRound, lockID
		if e := m.hs.values[lockID]; e != nil {
			m.lockedValue = e.value
		}
	}
	if valid != nil && valid.Round >= m.lockedRound {
		m.validRound, m.validID, m.validValue = valid.Round, valid.BlockID(), valid.Value
	} else if m.lockedValue != nil {
		m.validRound, m.validID, m.validValue = m.lockedRound, m.lockedID, m.lockedValue
	}

	// startRound re-sends our proposal of that round if we signed one. A
	// round-0 proposer that signed none may wait for work again; it then
	// proposes when the wait ends, as it would have at once without waiting.
	m.startRound(round)
	switch {
	case m.hs.ownVotes[voteKey{round, Precommit}] != nil:
		m.enterStep(StepPrecommit)
		m.send(Broadcast, m.hs.ownVotes[voteKey{round, Precommit}])
		m.schedule(TimeoutPrecommit, round)
	case m.hs.ownVotes[voteKey{round, Prevote}] != nil:
		m.enterStep(StepPrevote)
		m.send(Broadcast, m.hs.ownVotes[voteKey{round, Prevote}])
		m.schedule(TimeoutPrevote, round)
	}
	// The messages we received before the crash are gone; the line 34/36/47
	// flags start over, which at worst re-schedules a timeout.
}

func hasProposal(rs *roundState, p *Proposal) bool {
	for _, q := range rs.proposals {
		if q.BlockID() == p.BlockID() && q.ValidRound == p.ValidRound && q.Proposer == p.Proposer {
			return true
		}
	}
	return false
}
