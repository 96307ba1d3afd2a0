package consensus

import "flag"

// The simulator's flags live in internal/sim; they are declared here too so
// that `go test ./consensus/... -sim.seeds=N` does not fail in this package.
var (
	_ = flag.Int("sim.seeds", 1000, "simulator seeds per scenario (used by internal/sim)")
	_ = flag.Int64("sim.seed", -1, "simulator seed to replay (used by internal/sim)")
	_ = flag.String("sim.scenario", "", "simulator scenario (used by internal/sim)")
	_ = flag.Int("sim.n", 0, "simulated validators (used by internal/sim)")
)
