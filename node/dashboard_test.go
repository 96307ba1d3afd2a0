package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
)

// pagesServer is the API of a node that has not started: the embedded
// pages need nothing else.
func pagesServer(t *testing.T) (*httptest.Server, *Node) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	n := &Node{name: "pages", ctx: ctx}
	srv := httptest.NewServer((&server{n: n, reg: prometheus.NewRegistry()}).routes())
	t.Cleanup(srv.Close)
	return srv, n
}

func TestDashboard_PagesServedFromEmbeddedFS(t *testing.T) {
	srv, _ := pagesServer(t)
	for _, c := range []struct {
		path, ctype, contains string
	}{
		{"/", "text/html", `id="status-banner"`},
		{"/dashboard", "text/html", `id="validators"`},
		{"/dashboard.html", "text/html", `src="/dashboard.js"`},
		{"/style.css", "text/css", ".banner"},
		{"/dashboard.js", "text/javascript", "/v1/events"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", c.path, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
			t.Errorf("GET %s: content type %q, want %s", c.path, ct, c.ctype)
		}
		if !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: content security policy %q", c.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", c.path)
		}
	}
	// The pages reference only this node (the machine may be offline).
	for _, name := range []string{"dashboard.html", "dashboard.js", "style.css"} {
		b, err := webRoot.ReadFile("web/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "http://") && name != "dashboard.js" || strings.Contains(string(b), "https://") {
			t.Errorf("%s loads something from another origin", name)
		}
	}
}

func TestAttack_DashboardAssetPathTraversal(t *testing.T) {
	srv, _ := pagesServer(t)
	for _, p := range []string{"/nope.js", "/.hidden", "/..%2fweb.go", "/%2e%2e%2fevents.go", "/web.go", "/README.md"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s served %d bytes: %.80q", p, len(body), body)
		}
	}
}

// A subscriber that never reads costs it events, not the publisher time:
// broadcasting never waits on it.
func TestEvents_SlowSubscriberDropsInsteadOfBlocking(t *testing.T) {
	var e eventHub
	slow, ok := e.subscribe()
	if !ok {
		t.Fatal("first subscriber refused")
	}
	fast, _ := e.subscribe()
	got := 0
	for i := 0; i < 10*eventBuffer; i++ {
		e.broadcast(sseFrame("height", fmt.Appendf(nil, `{"height":%d}`, i)))
		select {
		case <-fast:
			got++
		default:
		}
	}
	if len(slow) != eventBuffer {
		t.Fatalf("slow subscriber holds %d events, want its buffer of %d", len(slow), eventBuffer)
	}
	if got != 10*eventBuffer {
		t.Fatalf("a reading subscriber got %d of %d events", got, 10*eventBuffer)
	}
}

// The chain observer's hand-off never blocks, whether or not the worker
// keeps up (here it has stopped).
func TestEvents_PublishNeverBlocksTheConsensusActor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := &Node{ctx: ctx}
	done := make(chan struct{})
	go func() {
		for h := uint64(1); h <= 1000; h++ {
			n.publishEvent(&chain.View{Height: h})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // a deadlock guard, not a timing assertion
		t.Fatal("publishing 1000 views blocked")
	}
}

func TestAttack_EventSubscriberFloodIsCapped(t *testing.T) {
	srv, s := pagesServer(t)
	// Fill the hub of the served node to its cap.
	var held []chan []byte
	for i := 0; i < maxEventSubscribers; i++ {
		ch, ok := s.events.subscribe()
		if !ok {
			t.Fatalf("subscriber %d refused below the cap", i)
		}
		held = append(held, ch)
	}
	resp, err := http.Get(srv.URL + api.PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("subscriber %d: %d, want 429", maxEventSubscribers+1, resp.StatusCode)
	}
	s.events.unsubscribe(held[0])
	if _, ok := s.events.subscribe(); !ok {
		t.Fatal("a freed slot was not reusable")
	}
}

func TestProposerByCreditsMatchesTheSelectorDistribution(t *testing.T) {
	// Zero credits: every validator weighs 1; a heavy validator is picked
	// in proportion to 1+credits.
	cr := []int64{0, 0, 0, 97}
	counts := make([]int, len(cr))
	for h := uint64(1); h <= 2000; h++ {
		p := proposerByCredits(cr, h, consensus.Round(0))
		if p < 0 || p >= len(cr) {
			t.Fatalf("proposer %d out of range", p)
		}
		counts[p]++
	}
	if counts[3] < 1800 {
		t.Fatalf("validator with 97 credits proposed %d of 2000 heights (weights 1,1,1,98)", counts[3])
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data []byte
}

// readEvents parses an event stream into out until it ends.
func readEvents(body io.Reader, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = []byte(strings.TrimPrefix(line, "data: "))
		}
	}
}

// A running cluster streams a height event per finalized height, in
// increasing order, whose block lists a committed transfer's envelope
// (sender, payee, kind) and nothing about its amount; a subscriber that
// never reads does not stall finalization.
func TestCluster_EventStreamShowsHeightsAndEnvelopes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 1_000, "bob": 0, "carol": 0})
	c.waitReady(0, 1, 2, 3)

	// A client that subscribes and never reads a byte.
	u := strings.TrimPrefix(c.apis[0], "http://")
	slow, err := net.Dial("tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", api.PathEvents, u)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.apis[0]+api.PathEvents, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan sseEvent, 1024)
	go readEvents(resp.Body, events)

	b := c.dealer()
	bal, h := c.balance("alice", 0, 1, 2)
	st := c.send(b, "alice", "bob", 25, bal, h, nil, 0)
	if st.Status != api.StatusCommitted {
		t.Fatalf("transfer: %+v", st)
	}

	var last uint64
	heights, sawStatus, sawEnvelope, sawOutcome, sawProposer := 0, false, false, false, false
	deadline := time.After(2 * time.Minute) // a guard against a hang, not a timing assertion
	for !(sawStatus && sawEnvelope && sawOutcome && sawProposer && heights >= 3) {
		var ev sseEvent
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			ev = e
		case <-deadline:
			t.Fatalf("stream: status %v, envelope %v, outcome %v, proposer %v, %d heights", sawStatus, sawEnvelope, sawOutcome, sawProposer, heights)
		}
		switch ev.name {
		case "status":
			var s api.Status
			if err := json.Unmarshal(ev.data, &s); err != nil || s.Chain != c.gen.ChainID {
				t.Fatalf("status event %s: %v", ev.data, err)
			}
			sawStatus = true
		case "height":
			var he api.HeightEvent
			if err := json.Unmarshal(ev.data, &he); err != nil {
				t.Fatalf("height event %s: %v", ev.data, err)
			}
			if he.Height <= last {
				t.Fatalf("height %d after %d", he.Height, last)
			}
			last = he.Height
			heights++
			if len(he.Credits) != 4 || he.Block.Height != he.Height {
				t.Fatalf("height event %s", ev.data)
			}
			if he.ProposerHeight > 0 && (he.Proposer < -1 || he.Proposer >= 4) || he.ProposerHeight != 0 && he.ProposerHeight != he.Height-1 {
				t.Fatalf("proposer %d of height %d", he.Proposer, he.ProposerHeight)
			}
			sawProposer = sawProposer || he.Proposer >= 0
			if strings.Contains(strings.ToLower(string(ev.data)), "amount") {
				t.Fatalf("height event names an amount: %s", ev.data)
			}
			for _, env := range he.Block.Transfers {
				if env.ID == st.ID {
					if env.From != c.users["alice"].id.String() || env.To != c.users["bob"].id.String() || env.Kind != "pay" {
						t.Fatalf("envelope %+v", env)
					}
					sawEnvelope = true
				}
			}
			for _, o := range he.Outcomes {
				if o.ID == st.ID {
					if o.Status != api.StatusCommitted || o.Code != "accepted" {
						t.Fatalf("outcome %+v", o)
					}
					sawOutcome = true
				}
			}
		}
	}
	// The non-reading subscriber is still connected and the chain went on.
	if c.status(0).Height < last {
		t.Fatalf("chain at %d behind the stream's %d", c.status(0).Height, last)
	}
}
