package sim

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

var (
	flagSeeds    = flag.Int("sim.seeds", 1000, "seeds per scenario")
	flagSeed     = flag.Int64("sim.seed", -1, "run only this seed (with -v, prints its trace)")
	flagScenario = flag.String("sim.scenario", "", "run only this scenario")
	flagN        = flag.Int("sim.n", 0, "validators (0: 4, 7 or 10 by seed)")
)

// TestSim runs every scenario over -sim.seeds seeds (1000 by default). A
// failure prints the go test command that replays the seed with its trace.
func TestSim(t *testing.T) {
	for _, sc := range Scenarios {
		if *flagScenario != "" && sc.Name != *flagScenario {
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			first, last := int64(1), int64(*flagSeeds)
			if *flagSeed >= 0 {
				first, last = *flagSeed, *flagSeed
			}
			var sum Result
			start := time.Now()
			for seed := first; seed <= last; seed++ {
				opt := Options{Seed: seed, N: *flagN}
				var trace strings.Builder
				if *flagSeed >= 0 && testing.Verbose() {
					opt.Trace = &trace
				}
				res, err := Run(sc, opt)
				if opt.Trace != nil {
					fmt.Fprint(os.Stdout, trace.String())
				}
				if err != nil {
					n := ""
					if *flagN != 0 {
						n = fmt.Sprintf(" -sim.n=%d", *flagN)
					}
					t.Fatalf("seed %d (N=%d, %d byzantine): %v\nreplay: go test ./consensus/internal/sim -run 'TestSim/%s$' -sim.scenario=%s -sim.seed=%d%s -v",
						seed, res.N, res.Byzantine, err, sc.Name, sc.Name, seed, n)
				}
				sum.Heights += res.Heights
				sum.Events += res.Events
				sum.Evidence += res.Evidence
				sum.Restarts += res.Restarts
				sum.SigVerifies += res.SigVerifies
			}
			runs := last - first + 1
			t.Logf("%d seeds in %v: %.1f heights/run, %d events/run, evidence %d, restarts %d, %d ed25519 verifications/run",
				runs, time.Since(start).Round(time.Millisecond), float64(sum.Heights)/float64(runs), sum.Events/int(runs),
				sum.Evidence, sum.Restarts, sum.SigVerifies/int(runs))
		})
	}
}
