package testnet

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/zkbank/zkbank/wallet"
)

// Report is what a load run observed.
type Report struct {
	Planned   int // transfers the run meant to make
	Submitted int // uploads acknowledged by a node
	Committed int
	// Payments are the payments committed transfers made: Committed, or
	// with pay-many each transfer's payees.
	Payments int
	Rejected map[string]int // by reason code
	Errors   map[string]int // client-side failures by kind (never submitted, or no verdict)
	Skipped  int            // sender had no funds
	// Applies are the operations that moved wallets' pending funds into
	// their available balances (not transfers: not in Committed or TPS).
	Applies, AppliesRejected int
	AppliesRejectedBy        map[string]int // by reason code
	Unsettled                int            // submitted but no verdict seen (timeout, node lost)

	InvalidSubmitted int // deliberate overdrafts sent
	InvalidRejected  int
	InvalidAccepted  int // must be 0: an overdraft the validators let through
	ValidRejected    int // honest transfers rejected (e.g. stale_height races)

	Elapsed   time.Duration   // first submission to last verdict
	Latencies []time.Duration // submit -> commit, committed transfers only

	// Stages is where the validators' time went during the run, from their
	// own metrics (zero Nodes if they could not be read).
	Stages Stages
	// Memory is the validators' resident memory during the run (zero if
	// their metrics could not be read).
	Memory Memory

	SupplyChecked bool
	SupplyBefore  uint64
	SupplyAfter   uint64
	Wallets       int
}

func newReport() *Report {
	return &Report{Rejected: map[string]int{}, Errors: map[string]int{}, AppliesRejectedBy: map[string]int{}}
}

// TPS is committed transfers per second of wall time.
func (r *Report) TPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Committed) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0 < p <= 100) of the commit
// latencies by the nearest-rank method, 0 without samples.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100 + 0.999999999)
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// RejectedTotal sums rejections over all reasons.
func (r *Report) RejectedTotal() int {
	n := 0
	for _, v := range r.Rejected {
		n += v
	}
	return n
}

// ErrCheckFailed is returned by Check when a run broke an invariant.
var ErrCheckFailed = errors.New("load check failed")

// Check states the run's invariants: no deliberate overdraft accepted, supply
// conserved.
func (r *Report) Check() error {
	var bad []string
	if r.InvalidAccepted > 0 {
		bad = append(bad, fmt.Sprintf("%d deliberately invalid transfers were ACCEPTED", r.InvalidAccepted))
	}
	if r.SupplyChecked && r.SupplyBefore != r.SupplyAfter {
		msg := fmt.Sprintf("supply changed from %s to %s", wallet.FormatAmount(r.SupplyBefore), wallet.FormatAmount(r.SupplyAfter))
		if r.Unsettled > 0 {
			msg += fmt.Sprintf(" (%d transfers had no verdict and may have landed between balance reads)", r.Unsettled)
		}
		bad = append(bad, msg)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(bad, "; "))
	}
	return nil
}

// Write prints the report for humans.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "transfers   planned %d, submitted %d, committed %d, rejected %d", r.Planned, r.Submitted, r.Committed, r.RejectedTotal())
	if r.Skipped > 0 {
		fmt.Fprintf(w, ", skipped %d (no funds)", r.Skipped)
	}
	fmt.Fprintln(w)
	for _, code := range sortedKeys(r.Rejected) {
		fmt.Fprintf(w, "  rejected  %-20s %d\n", code, r.Rejected[code])
	}
	for _, k := range sortedKeys(r.Errors) {
		fmt.Fprintf(w, "  error     %-20s %d\n", k, r.Errors[k])
	}
	if r.InvalidSubmitted > 0 {
		fmt.Fprintf(w, "invalid     sent %d, rejected %d, accepted %d\n", r.InvalidSubmitted, r.InvalidRejected, r.InvalidAccepted)
	}
	if r.ValidRejected > 0 {
		fmt.Fprintf(w, "honest transfers rejected: %d (see codes above; a wallet's later payments fail with an earlier one)\n", r.ValidRejected)
	}
	if r.Applies+r.AppliesRejected > 0 {
		fmt.Fprintf(w, "applies     %d committed, %d rejected (pending funds made spendable)\n", r.Applies, r.AppliesRejected)
		for _, code := range sortedKeys(r.AppliesRejectedBy) {
			fmt.Fprintf(w, "  rejected  %-20s %d (applies)\n", code, r.AppliesRejectedBy[code])
		}
	}
	fmt.Fprintf(w, "throughput  %.2f transfers/s over %s", r.TPS(), r.Elapsed.Round(time.Millisecond))
	if r.Payments > r.Committed && r.Elapsed > 0 {
		fmt.Fprintf(w, " (pay-many: %.2f payments/s, %d payments)", float64(r.Payments)/r.Elapsed.Seconds(), r.Payments)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "latency     submit->commit p50 %s, p99 %s (%d samples)\n",
		Percentile(r.Latencies, 50).Round(time.Millisecond), Percentile(r.Latencies, 99).Round(time.Millisecond), len(r.Latencies))
	r.Stages.write(w, r.Elapsed, r.Committed)
	r.Memory.write(w)
	if r.SupplyChecked {
		verdict := "conserved"
		if r.SupplyBefore != r.SupplyAfter {
			verdict = "CHANGED"
		}
		fmt.Fprintf(w, "supply      %s before, %s after over %d wallets: %s\n",
			wallet.FormatAmount(r.SupplyBefore), wallet.FormatAmount(r.SupplyAfter), r.Wallets, verdict)
	}
}

func sortedKeys(m map[string]int) []string {
	k := slices.Collect(maps.Keys(m))
	sort.Strings(k)
	return k
}
