// Package ledgertest builds committees for other packages' tests: the real
// key ceremony of ledger run by N parties in one process, with every party's
// key share. It exists for tests only (nothing that ships imports it), and
// imports nothing of this module but ledger.
package ledgertest

import (
	"github.com/zkbank/zkbank/ledger"
)

// Committee is a t-of-N committee after its key ceremony.
type Committee struct {
	Params *ledger.Params
	Com    *ledger.Committee
	Keys   *ledger.PublicKeys
	Shares []*ledger.KeyShare // validator i's key share at index i
	Engine *ledger.Engine
	Dec    *ledger.Decryptor
}

// New runs a t-of-n ceremony on the zkb128 parameters with seed (a chain id,
// say). It takes seconds: share one per test binary.
func New(n, t int, seed []byte) (*Committee, error) {
	p := ledger.MustParams(ledger.ZKB128)
	com, err := ledger.NewCommittee(n, t)
	if err != nil {
		return nil, err
	}
	parties := make([]*ledger.Party, n)
	var r1 []*ledger.Round1
	var deals []*ledger.ShamirDeal
	for i := range parties {
		if parties[i], err = ledger.NewParty(p, com, i, seed); err != nil {
			return nil, err
		}
		m, d, err := parties[i].Round1()
		if err != nil {
			return nil, err
		}
		r1, deals = append(r1, m), append(deals, d...)
	}
	var r2 []*ledger.Round2
	for _, pt := range parties {
		m, err := pt.Round2(r1)
		if err != nil {
			return nil, err
		}
		r2 = append(r2, m)
	}
	keys, err := ledger.AggregatePublic(p, com, seed, r1, r2)
	if err != nil {
		return nil, err
	}
	c := &Committee{Params: p, Com: com, Keys: keys}
	for _, pt := range parties {
		ks, err := pt.Finish(deals)
		if err != nil {
			return nil, err
		}
		c.Shares = append(c.Shares, ks)
	}
	if c.Engine, err = ledger.NewEngine(p, keys); err != nil {
		return nil, err
	}
	if c.Dec, err = ledger.NewDecryptor(p, com); err != nil {
		return nil, err
	}
	return c, nil
}
