package ledger

// Threshold checks: "this encrypted value is at least Min", answered with
// one bit (the decision-only answer a lender gets, issue: lending on
// encrypted credit scores).
//
// The check is a payment's circuit with the amount replaced by a public
// minimum: the owner deals the bits of v - Min (row 1, AtLeastValues), the
// holders of piece 0 write Min itself in row 0 (LanePiece.AtLeast; every
// other piece writes zero there, so the pieces sum to exactly Min whatever
// the dealer sent), booleanness reads row 1 only (Item.Fixed), and the
// balance equation against the plane holding v reads Min + (v - Min) = v.
// Only an owner whose v >= Min has such bits: below the minimum there is no
// decomposition, so the check fails. Whoever sees the decrypted checks of
// an honest owner sees zeros and the verdict: one bit.

// AtLeastValues returns the slot values an owner deals to prove v >= min
// (ValuesFor(1) of them): row 0 zero (validators write min), row 1 the bits
// of v - min. It refuses, before anything is sent, a check the owner knows
// would fail.
func AtLeastValues(v, min uint64) ([]uint64, error) {
	if min > MaxAmount || v < min || v-min > MaxAmount {
		if v < min {
			return nil, ErrBelowMinimum
		}
		return nil, ErrMalformed
	}
	return TransferValues(0, v-min), nil
}
