package consensus

import "fmt"

// VerifyCommit checks that cert proves a decision under vals: every signature
// is a valid precommit for (Height, Round, BlockID) by a distinct validator
// (strictly increasing indices), and together they hold more than 2/3 of the
// voting power. It does not judge the extensions' content; that is
// Application.VerifyExtension's job. A lagging node uses it on fetched blocks.
func VerifyCommit(chainID string, vals *ValidatorSet, cert *CommitCertificate) error {
	return verifyCommit(Ed25519Verifier{}, chainID, vals, cert)
}

// VerifyCommitWith is VerifyCommit with a given Verifier (for example a cache).
func VerifyCommitWith(ver Verifier, chainID string, vals *ValidatorSet, cert *CommitCertificate) error {
	return verifyCommit(ver, chainID, vals, cert)
}

func verifyCommit(ver Verifier, chainID string, vals *ValidatorSet, cert *CommitCertificate) error {
	if cert == nil || cert.Height == 0 || cert.BlockID.IsNil() || cert.Round < 0 {
		return fmt.Errorf("%w: empty or nil certificate", ErrInvalidCommit)
	}
	var power int64
	last := -1
	for i := range cert.Sigs {
		v := cert.Vote(i)
		if v.Validator <= last || !vals.Has(v.Validator) {
			return fmt.Errorf("%w: validator %d out of order or unknown", ErrInvalidCommit, v.Validator)
		}
		last = v.Validator
		if !verifyVote(ver, chainID, vals, v) {
			return fmt.Errorf("%w: validator %d: %w", ErrInvalidCommit, v.Validator, ErrInvalidSignature)
		}
		power += vals.Power(v.Validator)
	}
	if !vals.IsQuorum(power) {
		return fmt.Errorf("%w: %d of %d voting power", ErrInvalidCommit, power, vals.TotalPower())
	}
	return nil
}
