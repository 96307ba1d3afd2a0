package ledger

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkReshare times one whole resharing (every participant in this
// process, one after the other: deal, acknowledge, commit, check, and every
// new member's verdict) from a verified-ceremony key: 2-of-4 to 2-of-5 and
// 3-of-7 to 3-of-7. Per-phase times and bytes are reported as metrics.
//
//	go test ./ledger -run '^$' -bench BenchmarkReshare -benchtime 1x
func BenchmarkReshare(b *testing.B) {
	for _, c := range []struct{ n, t, n2, t2 int }{{4, 2, 5, 2}, {7, 3, 7, 3}} {
		b.Run(fmt.Sprintf("%dof%d_to_%dof%d", c.t, c.n, c.t2, c.n2), func(b *testing.B) {
			base := verifiedBase(b, c.n, c.t)
			h := base.run(b, nil)
			for i, err := range h.errs {
				if err != nil {
					b.Fatalf("ceremony party %d: %v", i, err)
				}
			}
			from := &rsKeys{p: base.p, com: base.com, keys: h.keys, shares: h.shares, signers: base.signers, verify: base.verify}
			dealers := make([]int, c.t)
			for i := range dealers {
				dealers[i] = i
			}
			b.ResetTimer()
			var res *rsResult
			for i := 0; i < b.N; i++ {
				res = reshareRun(b, from, c.n2, c.t2, dealers, nil)
				if err := res.firstErr(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(res.elapsed.deal), "deal-ms")
			b.ReportMetric(ms(res.elapsed.ack), "ack+verifier-ms")
			b.ReportMetric(ms(res.elapsed.commit), "commit-ms")
			b.ReportMetric(ms(res.elapsed.check), "check-ms")
			b.ReportMetric(ms(res.elapsed.verdict), "verdict-ms")
			b.ReportMetric(float64(res.bytes.deal)/1e6, "deal-MB")
			b.ReportMetric(float64(res.bytes.commit)/1e6, "commit-MB")
			b.ReportMetric(float64(res.bytes.check)/1e6, "check-MB")
		})
	}
}
