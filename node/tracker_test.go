package node

import (
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkbank/zkbank/api"
)

func TestTrackerMemoryIsBounded(t *testing.T) {
	tr := newTracker(newMetrics(prometheus.NewRegistry()))
	for i := 0; i < maxStatuses+10; i++ {
		k := strconv.Itoa(i)
		tr.track(k, &api.TransferStatus{ID: k})
	}
	if len(tr.status) != maxStatuses || len(tr.order) != maxStatuses {
		t.Fatalf("%d statuses, %d ids kept", len(tr.status), len(tr.order))
	}
	if _, ok := tr.get(strconv.Itoa(0)); ok {
		t.Fatal("oldest status not evicted")
	}
	if _, ok := tr.get(strconv.Itoa(maxStatuses + 9)); !ok {
		t.Fatal("newest status evicted")
	}
}
