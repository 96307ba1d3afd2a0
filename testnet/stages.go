package testnet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
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
	// MaxRSS is the largest resident memory of any node that answered
	// (process_resident_memory_bytes), in bytes.
	MaxRSS float64
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
		if f, ok := fams["process_resident_memory_bytes"]; ok {
			for _, mt := range f.GetMetric() {
				out.MaxRSS = max(out.MaxRSS, mt.GetGauge().GetValue())
			}
		}
	}
	return out
}

// Memory is the validators' resident memory over a run (the largest of any
// node at each sample), in bytes: what a soak watches.
type Memory struct {
	Start, Peak, End float64
	Samples          int
}

// sampleMemory records the validators' resident memory every interval
// until ctx ends (the largest node at each sample), into mem under mu.
func sampleMemory(ctx context.Context, m *client.Multi, every time.Duration, mu *sync.Mutex, mem *Memory) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s := scrapeStages(ctx, m); s.MaxRSS > 0 {
			mu.Lock()
			mem.Peak = max(mem.Peak, s.MaxRSS)
			mem.Samples++
			mu.Unlock()
		}
	}
}

func (mem Memory) write(w io.Writer) {
	if mem.Start == 0 || mem.End == 0 {
		return
	}
	const mib = 1 << 20
	fmt.Fprintf(w, "memory      validators' resident memory (largest node): %.0f MiB at the start, peak %.0f MiB (%d samples), %.0f MiB at the end\n",
		mem.Start/mib, max(mem.Peak, mem.Start, mem.End)/mib, mem.Samples, mem.End/mib)
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
