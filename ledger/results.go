package ledger

import (
	"errors"
	"fmt"
)

// Reason says why a transfer was rejected. The zero value means accepted.
type Reason uint8

// Reject reasons. Homomorphic ones come from threshold-decrypted checks;
// the others from plaintext admission checks.
const (
	Accepted Reason = iota
	// RejectAmountRange: the amount's 32 bit slots are not all bits, so the
	// amount is negative, >= 2^32, or forged.
	RejectAmountRange
	// RejectNewBalanceRange: the new balance's bit slots are not all bits: the
	// sender tried to spend more than it has (or forged its new balance).
	RejectNewBalanceRange
	// RejectBalanceMismatch: amount + new balance != the balance the
	// operation spends from (a payment: the sender's available balance when
	// its block is evaluated; an apply: the pending balance at the height it
	// names): an overdraft dressed up with well-formed bits, a wrong balance,
	// or a payment built on an earlier one that was rejected.
	RejectBalanceMismatch
	RejectBadSignature
	RejectReplay
	RejectStaleHeight
	RejectFutureHeight
	RejectUnknownAccount
	RejectMalformed
	RejectLaneBusy
	// RejectSelfTransfer is no longer produced: a transfer to oneself is an
	// apply (pending into available). Kept so codes keep their numbers.
	RejectSelfTransfer
	// RejectUndecided: the validators' decryption shares disagreed and no
	// result was backed by t+f of them, or no f+1 holders agreed on a piece
	// ciphertext, so the batch or group is failed closed (a wrong share or
	// piece can delay a transfer, never make an invalid one valid).
	RejectUndecided
	// RejectPredecessor: the operation was built on an operation of the
	// account that is not its last accepted one (an earlier operation it
	// counted on was rejected, or never ordered). Decided in plaintext,
	// before any evaluation: the wallet rebuilds from its last accepted one.
	RejectPredecessor
	// RejectLoan: a repayment of a loan the sender does not owe (unknown,
	// another lender's, or fully settled), or a loan to a borrower who
	// already has MaxLoans open loans (or gets a second loan beyond that in
	// the same block).
	RejectLoan
)

var reasonNames = map[Reason]string{
	Accepted:              "accepted",
	RejectAmountRange:     "amount out of range",
	RejectNewBalanceRange: "insufficient funds (new balance out of range)",
	RejectBalanceMismatch: "insufficient funds or wrong balance (balance equation failed; resync the wallet's available balance)",
	RejectBadSignature:    "bad signature",
	RejectReplay:          "replayed nonce",
	RejectStaleHeight:     "stale pending height (an apply was committed since, or older than the retained window)",
	RejectFutureHeight:    "balance height in the future",
	RejectUnknownAccount:  "unknown account",
	RejectMalformed:       "malformed transfer",
	RejectLaneBusy:        "another operation of this account is in the same block",
	RejectSelfTransfer:    "sender and receiver are the same account",
	RejectUndecided:       "validators did not agree on its decryption shares or piece ciphertexts; resubmit",
	RejectPredecessor:     "built on an operation of the account that was not accepted; rebuild from the last accepted one",
	RejectLoan:            "no such open loan to repay to this lender, or the borrower has too many open loans",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Code is a stable machine-readable name.
func (r Reason) Code() string {
	switch r {
	case Accepted:
		return "accepted"
	case RejectAmountRange:
		return "amount_range"
	case RejectNewBalanceRange:
		return "insufficient_funds"
	case RejectBalanceMismatch:
		return "balance_mismatch"
	case RejectBadSignature:
		return "bad_signature"
	case RejectReplay:
		return "replay"
	case RejectStaleHeight:
		return "stale_height"
	case RejectFutureHeight:
		return "future_height"
	case RejectUnknownAccount:
		return "unknown_account"
	case RejectMalformed:
		return "malformed"
	case RejectLaneBusy:
		return "lane_busy"
	case RejectSelfTransfer:
		return "self_transfer"
	case RejectUndecided:
		return "undecided"
	case RejectPredecessor:
		return "predecessor"
	case RejectLoan:
		return "loan"
	}
	return "unknown"
}

// ErrInconsistentDecryption: a decryption of the checks has nonzero values
// where every correct decryption has zeros: some share was wrong.
var ErrInconsistentDecryption = errors.New("ledger: decryption inconsistent with the check layout")

// RejectError is a rejection as an error a caller can act on.
type RejectError struct{ Reason Reason }

func (e *RejectError) Error() string { return "transfer rejected: " + e.Reason.String() }

// Verdicts reads the decrypted check slots into one verdict per active lane.
// A lane is accepted only if all 64 booleanness slots and its equality slot
// decrypt to exactly zero; a pay-many payer's lane (a key of subs) also
// needs every payee lane's 32 amount slots to.
func (p *Params) Verdicts(lanes []int, subs map[int][]int, bits, eq []uint64) (map[int]Reason, error) {
	if len(bits) != p.Slots || len(eq) != p.Slots {
		return nil, fmt.Errorf("%w: decrypted check length", ErrBatch)
	}
	// Integrity: every slot that carries no check must decrypt to exactly 0
	// (idle lanes of Bits; everything but the active anchors of Eq). A wrong
	// decryption share randomizes every slot, so this catches it with
	// overwhelming probability; only a share crafted with knowledge of the
	// other shares could pass (see docs/PROTOCOL.md, passive security).
	active := make([]bool, p.Lanes)
	anchors := make(map[int]bool, len(lanes))
	for _, l := range lanes {
		if l < 0 || l >= p.Lanes {
			return nil, fmt.Errorf("%w: lane %d", ErrBatch, l)
		}
		active[l] = true
		anchors[p.Slot(0, 0, l)] = true
	}
	for _, sub := range subs {
		for _, l := range sub {
			if l < 0 || l >= p.Lanes {
				return nil, fmt.Errorf("%w: lane %d", ErrBatch, l)
			}
			active[l] = true
		}
	}
	for s, v := range eq {
		if v != 0 && !anchors[s] {
			return nil, fmt.Errorf("%w: %w", ErrShare, ErrInconsistentDecryption)
		}
	}
	for s, v := range bits {
		if v != 0 && !active[s%p.Lanes] {
			return nil, fmt.Errorf("%w: %w", ErrShare, ErrInconsistentDecryption)
		}
	}
	out := make(map[int]Reason, len(lanes))
	for _, l := range lanes {
		r := Accepted
		for j := 0; j < p.Bits && r == Accepted; j++ {
			if bits[p.Slot(0, j, l)] != 0 {
				r = RejectAmountRange
			}
		}
		for j := 0; j < p.Bits && r == Accepted; j++ {
			if bits[p.Slot(1, j, l)] != 0 {
				r = RejectNewBalanceRange
			}
		}
		for _, s := range subs[l] {
			for j := 0; j < p.Bits && r == Accepted; j++ {
				if bits[p.Slot(0, j, s)] != 0 {
					r = RejectAmountRange
				}
			}
		}
		if r == Accepted && eq[p.Slot(0, 0, l)] != 0 {
			r = RejectBalanceMismatch
		}
		out[l] = r
	}
	return out, nil
}

// DecryptChecks threshold-decrypts a batch's checks and returns per-lane verdicts.
func (d *Decryptor) DecryptChecks(ev *Evaluation, bitsShares, eqShares []*DecShare) (map[int]Reason, error) {
	b, err := d.Combine(ev.Checks.Bits, bitsShares)
	if err != nil {
		return nil, fmt.Errorf("booleanness check: %w", err)
	}
	q, err := d.Combine(ev.Checks.Eq, eqShares)
	if err != nil {
		return nil, fmt.Errorf("balance check: %w", err)
	}
	return d.p.Verdicts(ev.Lanes, ev.Subs, b, q)
}

// ShareChecks produces this validator's shares of both check ciphertexts.
func (d *Decryptor) ShareChecks(ks *KeyShare, c *Checks) (bits, eq *DecShare, err error) {
	if bits, err = d.Share(ks, c.Bits); err != nil {
		return nil, nil, err
	}
	if eq, err = d.Share(ks, c.Eq); err != nil {
		return nil, nil, err
	}
	return bits, eq, nil
}
