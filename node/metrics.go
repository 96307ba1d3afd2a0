package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the node's Prometheus collectors, registered on the node's own
// registry (never the global one: several nodes may share a process).
type Metrics struct {
	Height      prometheus.Gauge
	Committed   prometheus.Counter
	Rejected    *prometheus.CounterVec
	BlockTime   prometheus.Histogram
	Evaluation  prometheus.Histogram
	Finality    prometheus.Histogram
	Mempool     prometheus.Gauge
	Submissions *prometheus.CounterVec
	Fetches     *prometheus.CounterVec
	// ValidatorFaults counts extensions, by validator, whose shares or
	// digest disagreed with a decision.
	ValidatorFaults *prometheus.CounterVec
	// PeersBestHeight is the highest height a peer announced (heads gossip).
	PeersBestHeight prometheus.Gauge
	// Stage is the time spent per pipeline stage (chain.Stage*, plus
	// "open": sealed boxes opened at admission): where a validator's time
	// goes under load (zkbank load reports it).
	Stage *prometheus.HistogramVec
	// Reencryptions counts re-encryption shares released, by query
	// (balance, score): a refused request releases none.
	Reencryptions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Height:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_height", Help: "Last finalized height."}),
		Committed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "zkbank_transfers_committed_total", Help: "Transfers decided valid and applied."}),
		Rejected:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_transfers_rejected_total", Help: "Transfers decided invalid, by reason."}, []string{"reason"}),
		BlockTime:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zkbank_block_interval_seconds", Help: "Time between consecutive finalized heights (round durations).", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}),
		Evaluation:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zkbank_evaluation_seconds", Help: "Homomorphic evaluation of one block.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 10)}),
		Finality:        prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zkbank_finality_seconds", Help: "Submission (to this node) to decided result.", Buckets: prometheus.ExponentialBuckets(0.1, 1.6, 12)}),
		Mempool:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_mempool_uploads", Help: "Uploads waiting to be ordered."}),
		Submissions:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_submissions_total", Help: "Uploads received, by outcome of admission."}, []string{"result"}),
		Fetches:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_upload_fetches_total", Help: "Uploads and piece ciphertexts a received block or precommit named that this node lacked, fetched from peers before validation, by result (fetched, piece, invalid, failed)."}, []string{"result"}),
		PeersBestHeight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_peers_best_height", Help: "Highest finalized height announced by a peer on the heads gossip topic."}),
	}
	m.ValidatorFaults = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_validator_faults_total", Help: "Signed precommit extensions whose shares or digest disagreed with the decision, by validator (outvoted, no credit)."}, []string{"validator"})
	m.Stage = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zkbank_stage_seconds", Help: "Time spent per pipeline stage: decide (verdicts, pieces decided, block evaluated), pieces (own piece ciphertexts), shares (decryption shares), persist, propose, open (sealed boxes at admission).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"stage"})
	m.Reencryptions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_reencryptions_total", Help: "Re-encryption shares released to a requester's key, by query (balance, score); a refused request releases none."}, []string{"query"})
	reg.MustRegister(m.Reencryptions, m.Stage, m.ValidatorFaults, m.PeersBestHeight, m.Height, m.Committed, m.Rejected, m.BlockTime, m.Evaluation, m.Finality, m.Mempool, m.Submissions, m.Fetches)
	return m
}
