package testnet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
)

// Stages is the validators' own account of where their time went: seconds
// per pipeline stage (zkbank_stage_seconds), summed over the nodes that
// answered, plus evaluation (zkbank_evaluation_seconds, part of decide).
type Stages struct {
	Nodes   int
	Seconds map[string]float64
}

// scrapeStages reads every node's /metrics (Prometheus text format, parsed
// with the Prometheus library) and sums the stage timings.
func scrapeStages(ctx context.Context, m *client.Multi) Stages {
	out := Stages{Seconds: map[string]float64{}}
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, c := range m.Nodes() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL()+api.PathMetrics, nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		fams, err := parseMetrics(resp.Body)
		resp.Body.Close()
		if err != nil {
			continue
		}
		out.Nodes++
		if f, ok := fams["zkbank_stage_seconds"]; ok {
			for _, mt := range f.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "stage" {
						out.Seconds[l.GetValue()] += mt.GetHistogram().GetSampleSum()
					}
				}
			}
		}
		if f, ok := fams["zkbank_evaluation_seconds"]; ok {
			for _, mt := range f.GetMetric() {
				out.Seconds["evaluation"] += mt.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// delta is what the stages spent between two scrapes of the same nodes.
func (s Stages) delta(before Stages) Stages {
	out := Stages{Nodes: s.Nodes, Seconds: map[string]float64{}}
	for k, v := range s.Seconds {
		out.Seconds[k] = v - before.Seconds[k]
	}
	return out
}

// write prints the stages, largest first, with their share of the run's
// wall time per node and their cost per committed transfer.
func (s Stages) write(w io.Writer, elapsed time.Duration, committed int) {
	if s.Nodes == 0 || len(s.Seconds) == 0 {
		return
	}
	keys := make([]string, 0, len(s.Seconds))
	for k := range s.Seconds {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.Seconds[keys[i]] > s.Seconds[keys[j]] })
	var parts []string
	for _, k := range keys {
		v := s.Seconds[k]
		p := fmt.Sprintf("%s %.1fs", k, v)
		if elapsed > 0 {
			p += fmt.Sprintf(" (%.0f%%)", 100*v/float64(s.Nodes)/elapsed.Seconds())
		}
		if committed > 0 {
			p += fmt.Sprintf(" %.1fms/tx", 1000*v/float64(committed))
		}
		parts = append(parts, p)
	}
	fmt.Fprintf(w, "validators  time per stage, summed over %d nodes (%% of each node's wall time; evaluation is part of decide):\n", s.Nodes)
	for _, p := range parts {
		fmt.Fprintf(w, "  %s\n", p)
	}
}
