package testnet

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	d := ms(50, 10, 40, 20, 30) // unsorted on purpose
	for p, want := range map[float64]int{50: 30, 99: 50, 100: 50, 1: 10, 20: 10, 21: 20, 80: 40} {
		if got := Percentile(d, p); got != time.Duration(want)*time.Millisecond {
			t.Errorf("p%.0f = %v, want %dms", p, got, want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty")
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	if Percentile(hundred, 99) != 99*time.Millisecond || Percentile(hundred, 50) != 50*time.Millisecond {
		t.Errorf("1..100: p50 %v p99 %v", Percentile(hundred, 50), Percentile(hundred, 99))
	}
	if d[0] != 50*time.Millisecond {
		t.Error("Percentile sorted its input in place")
	}
}

func TestReportTalliesOutcomes(t *testing.T) {
	r := newReport()
	t0 := time.Unix(0, 0)
	r.add(outcome{submitted: true, status: api.StatusCommitted, start: t0, end: t0.Add(2 * time.Second)})
	r.add(outcome{submitted: true, status: api.StatusCommitted, start: t0, end: t0.Add(time.Second)})
	r.add(outcome{submitted: true, invalid: true, status: api.StatusRejected, code: "balance_mismatch"})
	r.add(outcome{submitted: true, invalid: true, status: api.StatusRejected, code: "insufficient_funds"})
	r.add(outcome{submitted: true, status: api.StatusRejected, code: "stale_height"})
	r.add(outcome{errKind: "submit: unreachable"})
	r.add(outcome{skipped: true})
	r.Elapsed = 4 * time.Second
	if r.Submitted != 5 || r.Committed != 2 || r.RejectedTotal() != 3 || r.InvalidSubmitted != 2 || r.InvalidRejected != 2 ||
		r.ValidRejected != 1 || r.Errors["submit: unreachable"] != 1 || r.Skipped != 1 || r.InvalidAccepted != 0 {
		t.Fatalf("%+v", r)
	}
	if r.TPS() != 0.5 {
		t.Fatalf("tps %v", r.TPS())
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	r.SupplyChecked, r.SupplyBefore, r.SupplyAfter, r.Wallets = true, 800000, 800000, 8
	r.Write(&b)
	for _, want := range []string{"submitted 5, committed 2, rejected 3", "balance_mismatch", "stale_height", "0.50 transfers/s", "p50 1s, p99 2s", "8000.00 before, 8000.00 after over 8 wallets: conserved", "invalid     sent 2, rejected 2, accepted 0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestReportCheckFailsOnAcceptedOverdraftOrSupplyChange(t *testing.T) {
	r := newReport()
	r.add(outcome{submitted: true, invalid: true, status: api.StatusCommitted})
	if err := r.Check(); !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "1 deliberately invalid transfers were ACCEPTED") {
		t.Fatalf("accepted overdraft: %v", err)
	}
	r = newReport()
	r.SupplyChecked, r.SupplyBefore, r.SupplyAfter = true, 100, 101
	if err := r.Check(); !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "supply changed from 1.00 to 1.01") {
		t.Fatalf("supply: %v", err)
	}
}

func TestSamplerUniformAndZipf(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	if _, err := NewSampler(r, 8, 1.0); err == nil {
		t.Fatal("zipf exponent 1 accepted")
	}
	if _, err := NewSampler(r, 0, 0); err == nil {
		t.Fatal("zero items accepted")
	}
	const draws = 40000
	count := func(s Sampler) []int {
		c := make([]int, 8)
		for i := 0; i < draws; i++ {
			c[s.Index()]++
		}
		return c
	}
	u, _ := NewSampler(r, 8, 0)
	for i, c := range count(u) {
		if c < draws/8*8/10 || c > draws/8*12/10 {
			t.Fatalf("uniform: item %d drawn %d times of %d", i, c, draws)
		}
	}
	z, _ := NewSampler(r, 8, 1.2)
	c := count(z)
	zz := z.(zipf)
	// Rank k has weight 1/(k+1)^1.2: rank 0 about 2.3x rank 1, and the
	// heaviest item takes over a third of the draws.
	top, second := c[zz.perm[0]], c[zz.perm[1]]
	if float64(top)/float64(second) < 1.9 || float64(top)/float64(second) > 2.7 || top < draws/3 {
		t.Fatalf("zipf counts %v (perm %v)", c, zz.perm)
	}
	for k := 1; k < 8; k++ {
		if c[zz.perm[k]] > c[zz.perm[k-1]] {
			t.Fatalf("zipf not decreasing by rank: %v (perm %v)", c, zz.perm)
		}
	}
}

func TestAmountSamplerBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []float64{0, 1.2} {
		a := amountSampler{r: r, s: s}
		if a.draw(0) != 0 {
			t.Fatal("amount from an empty balance")
		}
		if a.draw(1) != 1 || a.draw(19) != 1 {
			t.Fatal("tiny balances must allow 1 cent")
		}
		small := 0
		for i := 0; i < 5000; i++ {
			v := a.draw(100_000)
			if v < 1 || v > 100_000/maxFraction {
				t.Fatalf("s=%v: amount %d out of [1, %d]", s, v, 100_000/maxFraction)
			}
			if v <= 100 {
				small++
			}
		}
		if s > 0 && small < 2500 {
			t.Fatalf("zipf amounts not skewed to small: %d of 5000 <= 1.00", small)
		}
		if s == 0 && small > 500 {
			t.Fatalf("uniform amounts skewed: %d of 5000 <= 1.00", small)
		}
	}
}

// The load report reads the validators' stage timings from their metrics
// text and reports what a run spent per stage.
func TestStagesFromMetricsText(t *testing.T) {
	text := `# TYPE zkbank_stage_seconds histogram
zkbank_stage_seconds_bucket{stage="decide",le="+Inf"} 3
zkbank_stage_seconds_sum{stage="decide"} 2.5
zkbank_stage_seconds_count{stage="decide"} 3
zkbank_stage_seconds_bucket{stage="persist",le="+Inf"} 3
zkbank_stage_seconds_sum{stage="persist"} 0.5
zkbank_stage_seconds_count{stage="persist"} 3
# TYPE zkbank_evaluation_seconds histogram
zkbank_evaluation_seconds_bucket{le="+Inf"} 2
zkbank_evaluation_seconds_sum 1
zkbank_evaluation_seconds_count 2
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 7.3400320e+08
`
	fams, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := fams["zkbank_stage_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(); got != 2.5 {
		t.Fatalf("decide sum %v", got)
	}
	if got := fams["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue(); got != 734003200 {
		t.Fatalf("resident memory %v", got)
	}
	var mb strings.Builder
	Memory{Start: 400 << 20, Peak: 700 << 20, End: 650 << 20, Samples: 3}.write(&mb)
	if want := "400 MiB at the start, peak 700 MiB (3 samples), 650 MiB at the end"; !strings.Contains(mb.String(), want) {
		t.Fatalf("memory line %q lacks %q", mb.String(), want)
	}
	before := Stages{Nodes: 1, Seconds: map[string]float64{"decide": 0.5}}
	after := Stages{Nodes: 1, Seconds: map[string]float64{"decide": 2.5, "persist": 0.5}}
	var b strings.Builder
	after.delta(before).write(&b, 4*time.Second, 100)
	for _, want := range []string{"decide 2.0s (50%) 20.0ms/tx", "persist 0.5s (12%) 5.0ms/tx"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, b.String())
		}
	}
}
