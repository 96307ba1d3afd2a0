package ledger

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCeremonyVerified measures what the verified ceremony adds for one
// party on top of Round1/Round2: deriving the verifier (transcript hash,
// challenge, anchors), its Check, evaluating everyone's checks, and the
// verdict. Bytes are what the party sends in addition (to each of N-1
// peers: one check message and one verdict; deal signatures are +68 B).
func BenchmarkCeremonyVerified(b *testing.B) {
	for _, nt := range [][2]int{{4, 2}, {4, 3}, {7, 3}} {
		b.Run(fmt.Sprintf("N=%d,t=%d", nt[0], nt[1]), func(b *testing.B) {
			base := verifiedBase(b, nt[0], nt[1])
			n := nt[0]
			// One honest run gives every party's Round2 and check message.
			parties := make([]*Party, n)
			for i := range parties {
				parties[i] = cloneParty(base.parties[i])
			}
			accept := func(pt *Party) {
				for d := 0; d < n; d++ {
					signed, err := cloneParty(base.parties[d]).SignDeals([]*ShamirDeal{base.deals[d][pt.index]}, base.signers[d])
					if err != nil {
						b.Fatal(err)
					}
					if err := pt.AcceptDeal(signed[0], base.verify); err != nil {
						b.Fatal(err)
					}
				}
			}
			var r2 []*Round2
			for _, pt := range parties {
				accept(pt)
				m, err := pt.Round2(base.r1)
				if err != nil {
					b.Fatal(err)
				}
				r2 = append(r2, m)
			}
			v, err := NewCeremonyVerifier(base.p, base.com, base.seed, base.bind, base.r1, r2, base.verify)
			if err != nil {
				b.Fatal(err)
			}
			checks := make([]*CeremonyCheck, n)
			for i, pt := range parties {
				if checks[i], err = pt.Check(v); err != nil {
					b.Fatal(err)
				}
			}
			cb, _ := checks[0].MarshalBinary()
			rep := v.Evaluate(checks)
			var reveals []*CeremonyReveal
			for _, pt := range parties {
				r, _ := pt.Reveal(rep)
				reveals = append(reveals, r)
			}
			rb, _ := reveals[0].MarshalBinary()
			r1b, _ := base.r1[0].MarshalBinary()
			r2b, _ := r2[0].MarshalBinary()
			var tv, tc, te, td time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				pt := cloneParty(base.parties[0])
				accept(pt)
				pt.round2 = true // its Round2 is r2[0]
				b.StartTimer()
				t0 := time.Now()
				v, err := NewCeremonyVerifier(base.p, base.com, base.seed, base.bind, base.r1, r2, base.verify)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				c, err := pt.Check(v)
				if err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				all := append([]*CeremonyCheck{c}, checks[1:]...)
				rep := v.Evaluate(all)
				t3 := time.Now()
				if !rep.Accept() {
					b.Fatal("honest checks failed")
				}
				// The others judged the same messages (their digest, like
				// this party's, covers this party's fresh check).
				rs := make([]*CeremonyReveal, n)
				for j, r := range reveals {
					cp := *r
					cp.Digest = rep.Digest
					rs[j] = &cp
				}
				rs[0], _ = pt.Reveal(rep)
				if _, err := pt.VerifiedKeyShare(v, rep, rs); err != nil {
					b.Fatal(err)
				}
				tv, tc, te, td = tv+t1.Sub(t0), tc+t2.Sub(t1), te+t3.Sub(t2), td+time.Since(t3)
			}
			per := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
			b.ReportMetric(per(tv), "verifier-ms")
			b.ReportMetric(per(tc), "check-ms")
			b.ReportMetric(per(te), "evaluate-ms")
			b.ReportMetric(per(td), "verdict-ms")
			// Bytes this party sends each peer: check + verdict (+ deal
			// signature and its ceremony key on the private stream),
			// against the unverified ceremony's Round1 + Round2 + deal.
			extra := len(cb) + len(rb) + 68 + 32
			b.ReportMetric(float64(extra), "extra-B/peer")
			b.ReportMetric(float64(len(r1b)+len(r2b)+917588), "base-B/peer")
		})
	}
}
