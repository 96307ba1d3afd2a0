package p2p

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const testChain = "testchain"

func TestMain(m *testing.M) {
	// libp2p's own logs: errors only, to stderr, as a node's main would do
	// with its handler.
	level := slog.LevelError
	if os.Getenv("P2P_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	RouteLibp2pLogs(slog.NewTextHandler(os.Stderr, nil), level)
	os.Exit(m.Run())
}

// testLogger shows the package's logs with -v only when P2P_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("P2P_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// newHost starts a host on 127.0.0.1 with its own registry and closes it at
// the end of the test.
func newHost(t testing.TB, cfg Config) (*Host, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.ChainID == "" {
		cfg.ChainID = testChain
	}
	if cfg.Registerer == nil {
		cfg.Registerer = reg
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = 50 * time.Millisecond
		cfg.ReconnectMax = 500 * time.Millisecond
	}
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h, reg
}

// newMesh starts n hosts; host i bootstraps to every host before it, so the
// n hosts end fully connected, and waits for that.
func newMesh(t testing.TB, n int, cfg Config) []*Host {
	t.Helper()
	hosts := make([]*Host, 0, n)
	for range n {
		c := cfg
		c.Bootstrap = nil
		for _, prev := range hosts {
			c.Bootstrap = append(c.Bootstrap, prev.Addrs()...)
		}
		h, _ := newHost(t, c)
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		waitFor(t, 10*time.Second, func() bool { return len(h.Peers()) == n-1 }, "host %s to have %d peers", h.ID(), n-1)
	}
	return hosts
}

func waitFor(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connected(h *Host, p peer.ID) bool {
	for _, q := range h.Peers() {
		if q == p {
			return true
		}
	}
	return false
}

// counterValue reads a counter (optionally one label value) from a registry;
// absent means 0.
func counterValue(t testing.TB, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			if label == "" || hasLabel(m, label, value) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return sum
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// echo answers every request with its payload.
func echo(_ context.Context, _ peer.ID, p []byte) ([]byte, error) { return p, nil }

var (
	protoEcho = ProtocolID("echo", 1)
	protoBig  = ProtocolID("ceremony", 1)
)

func bigLimits() map[protocol.ID]ProtocolLimits {
	return map[protocol.ID]ProtocolLimits{protoBig: {MaxFrameBytes: 16 << 20, Timeout: 20 * time.Second}}
}

// gaugeWithLabels sums the samples of a metric whose labels include all of
// want; absent means 0.
func gaugeWithLabels(t testing.TB, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}
