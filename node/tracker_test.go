package node

import (
	"strconv"
	"strings"
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

// An apply (payer and payee the same account) is listed once in that
// account's history; a payment is listed once on each side.
func TestTrackerHistoryListsATransferOncePerAccount(t *testing.T) {
	tr := newTracker(newMetrics(prometheus.NewRegistry()))
	apply := &api.TransferStatus{ID: "apply", From: "a", To: "a"}
	pay := &api.TransferStatus{ID: "pay", From: "a", To: "b", Payees: []string{"b", "c"}}
	for _, st := range []*api.TransferStatus{apply, pay} {
		tr.track(st.ID, st)
		tr.rememberAll(st, st.ID)
	}
	want := map[string][]string{"a": {"pay", "apply"}, "b": {"pay"}, "c": {"pay"}}
	for acct, ids := range want {
		var got []string
		for _, st := range tr.historyOf(acct) {
			got = append(got, st.ID)
		}
		if strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Fatalf("history of %s: %v, want %v", acct, got, ids)
		}
	}
}
