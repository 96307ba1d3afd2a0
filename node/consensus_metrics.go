package node

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkbank/zkbank/consensus"
)

// consensusMetrics exports what the consensus machine reports under
// zkbank_consensus_*. The machine has no clock, so durations are measured
// here, between consecutive step reports. It is called only from the
// consensus actor, so it needs no lock.
type consensusMetrics struct {
	steps       *prometheus.HistogramVec
	rounds      prometheus.Counter
	roundsPerH  prometheus.Histogram
	height      prometheus.Gauge
	proposed    *prometheus.CounterVec
	late        *prometheus.CounterVec
	rejectedExt *prometheus.CounterVec
	equivocate  *prometheus.CounterVec
	rejectedMsg *prometheus.CounterVec
	rejectedVal prometheus.Counter

	step      consensus.Step
	stepSince time.Time
}

var _ consensus.Metrics = (*consensusMetrics)(nil)

func newConsensusMetrics(reg prometheus.Registerer) *consensusMetrics {
	m := &consensusMetrics{
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zkbank_consensus_step_duration_seconds",
			Help: "Time spent in each consensus step (propose, prevote, precommit) before the next.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"step"}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "zkbank_consensus_rounds_total", Help: "Consensus rounds started (one per height when nothing fails)."}),
		roundsPerH: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zkbank_consensus_rounds_per_height",
			Help: "Rounds a height needed before it was decided.", Buckets: []float64{1, 2, 3, 5, 8}}),
		height:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_consensus_height", Help: "Last height consensus decided."}),
		proposed:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_consensus_proposed_blocks_total", Help: "Decided blocks, by the validator that proposed them."}, []string{"validator"}),
		late:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_consensus_late_votes_total", Help: "Validly signed votes that arrived after their round, and attestations of a decided block, by type."}, []string{"type"}),
		rejectedExt: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_consensus_rejected_extensions_total", Help: "Precommit extensions the application refused, by validator."}, []string{"validator"}),
		equivocate:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_consensus_equivocations_total", Help: "Equivocation evidence, by validator."}, []string{"validator"}),
		rejectedMsg: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_consensus_rejected_messages_total", Help: "Consensus messages dropped, by reason."}, []string{"reason"}),
		rejectedVal: prometheus.NewCounter(prometheus.CounterOpts{Name: "zkbank_consensus_rejected_values_total", Help: "Proposed values (blocks) the application refused as invalid: this validator prevoted nil."}),
	}
	reg.MustRegister(m.rejectedVal, m.steps, m.rounds, m.roundsPerH, m.height, m.proposed, m.late, m.rejectedExt, m.equivocate, m.rejectedMsg)
	return m
}

func (m *consensusMetrics) StepEntered(_ uint64, _ consensus.Round, step consensus.Step) {
	now := time.Now()
	if !m.stepSince.IsZero() {
		m.steps.WithLabelValues(m.step.String()).Observe(now.Sub(m.stepSince).Seconds())
	}
	m.step, m.stepSince = step, now
	if step == consensus.StepPropose {
		m.rounds.Inc()
	}
}

func (m *consensusMetrics) HeightCommitted(height uint64, round consensus.Round, proposer int) {
	m.height.Set(float64(height))
	m.roundsPerH.Observe(float64(round) + 1)
	m.proposed.WithLabelValues(strconv.Itoa(proposer)).Inc()
}

func (m *consensusMetrics) LateVote(_ int, kind consensus.VoteType) {
	m.late.WithLabelValues(kind.String()).Inc()
}

func (m *consensusMetrics) ExtensionRejected(_ uint64, validator int, _ error) {
	m.rejectedExt.WithLabelValues(strconv.Itoa(validator)).Inc()
}

func (m *consensusMetrics) Equivocation(validator int) {
	m.equivocate.WithLabelValues(strconv.Itoa(validator)).Inc()
}

func (m *consensusMetrics) MessageRejected(reason string) {
	m.rejectedMsg.WithLabelValues(reason).Inc()
}

func (m *consensusMetrics) ValueRejected(uint64, error) { m.rejectedVal.Inc() }
