package consensus

import (
	"crypto/ed25519"
	"fmt"
	"testing"
)

type trustingVerifier struct{}

func (trustingVerifier) Verify(ed25519.PublicKey, []byte, []byte) bool { return true }

// BenchmarkMachineStep measures Step throughput of one validator fed a whole
// height at a time (proposal, n-1 prevotes, n-1 precommits, then commit).
// verify=ed25519 includes one signature check per message; verify=none
// isolates the state machine.
func BenchmarkMachineStep(b *testing.B) {
	for _, n := range []int{4, 100} {
		for _, ver := range []string{"ed25519", "none"} {
			b.Run(fmt.Sprintf("validators=%d/verify=%s", n, ver), func(b *testing.B) {
				benchSteps(b, n, ver == "none")
			})
		}
	}
}

func benchSteps(b *testing.B, n int, trust bool) {
	const heights = 20
	keys, vals := testKeys(n)
	signers := make([]Signer, n)
	for i := range signers {
		signers[i] = NewEd25519Signer(keys[i])
	}
	self := n - 1
	cfg := Config{ChainID: testChain, Validators: vals, Proposer: rotation(n)}
	if trust {
		cfg.Verifier = trustingVerifier{}
	}
	// Pre-sign every message of heights 1..heights (round 0, proposer 0).
	var msgs []Input
	for h := uint64(1); h <= heights; h++ {
		value := fmt.Appendf(nil, "value-%d-%d", h, h)
		p := NewProposal(h, 0, NoRound, 0, value)
		SignProposal(testChain, signers[0], p)
		msgs = append(msgs, p)
		for _, t := range []VoteType{Prevote, Precommit} {
			for i := range n - 1 {
				v := &Vote{Type: t, Height: h, Round: 0, BlockID: p.BlockID(), Validator: i}
				if t == Precommit {
					v.Extension = testExt(i, value)
				}
				SignVote(testChain, signers[i], v)
				msgs = append(msgs, v)
			}
		}
	}
	var m *Machine
	reset := func() {
		app := selfExtApp{newTestApp(), self}
		var err error
		if m, err = NewMachine(cfg, app, signers[self], nil); err != nil {
			b.Fatal(err)
		}
		if err := m.Start(1, nil); err != nil {
			b.Fatal(err)
		}
		m.Ready()
		m.Advance()
	}
	reset()
	committed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % len(msgs)
		if k == 0 && i > 0 {
			b.StopTimer()
			reset()
			b.StartTimer()
		}
		if err := m.Step(msgs[k]); err != nil {
			b.Fatal(err)
		}
		committed += len(m.Ready().Committed)
		m.Advance()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
	if perHeight := len(msgs) / heights; committed < b.N/perHeight-1 {
		b.Fatalf("%d heights committed in %d steps", committed, b.N)
	}
}
