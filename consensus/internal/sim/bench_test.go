package sim

import (
	"fmt"
	"testing"
)

// BenchmarkSimHeights runs n correct validators on a zero-delay, lossless
// network with real ed25519 (every distinct signature verified once, then
// cached) and reports simulated heights per second of wall time.
func BenchmarkSimHeights(b *testing.B) {
	for _, n := range []int{4, 100} {
		b.Run(fmt.Sprintf("validators=%d", n), func(b *testing.B) {
			sc := Scenario{Name: "bench"}
			res, err := Run(sc, Options{Seed: 1, N: n, Heights: uint64(b.N), RealCrypto: true})
			if err != nil {
				b.Fatal(err)
			}
			if res.Heights < uint64(b.N) {
				b.Fatalf("reached %d of %d heights", res.Heights, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heights/s")
		})
	}
}
