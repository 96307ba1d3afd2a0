package p2p

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// waitForTopicMesh waits until every host knows the other n-1 subscribe to
// the topic: publishing earlier may reach nobody.
func waitForTopicMesh(t *testing.T, hosts []*Host, name string) {
	t.Helper()
	for _, h := range hosts {
		waitFor(t, 10*time.Second, func() bool { return len(h.TopicPeers(name)) == len(hosts)-1 }, "%s to see %d subscribers", h.ID(), len(hosts)-1)
	}
}

func TestGossipReachesAllFourHosts(t *testing.T) {
	hosts := newMesh(t, 4, Config{})
	subs := make([]<-chan Message, len(hosts))
	for i, h := range hosts {
		ch, cancel, err := h.Subscribe("headers")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
		subs[i] = ch
	}
	waitForTopicMesh(t, hosts, "headers")

	for i, h := range hosts {
		if err := h.Publish(context.Background(), "headers", fmt.Appendf(nil, "header from %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, ch := range subs {
		seen := map[peer.ID]string{}
		timeout := time.After(10 * time.Second)
		for len(seen) < len(hosts)-1 {
			select {
			case m := <-ch:
				if m.Topic != "headers" || m.From == hosts[i].ID() {
					t.Fatalf("host %d got %+v", i, m)
				}
				seen[m.From] = string(m.Data)
			case <-timeout:
				t.Fatalf("host %d got %d of %d messages: %v", i, len(seen), len(hosts)-1, seen)
			}
		}
		for j, h := range hosts {
			if j != i && seen[h.ID()] != fmt.Sprintf("header from %d", j) {
				t.Fatalf("host %d: message from %d is %q", i, j, seen[h.ID()])
			}
		}
	}
}

func TestOversizedPublishIsRefused(t *testing.T) {
	a, _ := newHost(t, Config{})
	err := a.Publish(context.Background(), "headers", make([]byte, DefaultMaxGossipBytes+1))
	if !errors.Is(err, ErrGossipTooLarge) {
		t.Fatalf("err = %v, want ErrGossipTooLarge", err)
	}
	if err := a.Publish(context.Background(), "/zkbank/other/headers", nil); !errors.Is(err, ErrNamespace) {
		t.Fatalf("full topic path as a name: %v, want ErrNamespace", err)
	}
}

// A peer configured with a bigger gossip cap cannot push oversized messages
// to us: our topic validator drops them.
func TestOversizedGossipFromPeerIsDropped(t *testing.T) {
	a, _ := newHost(t, Config{})
	loose, _ := newHost(t, Config{Bootstrap: a.Addrs(), MaxGossipBytes: 128 << 10})
	ch, cancel, err := a.Subscribe("headers")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if _, cancelLoose, err := loose.Subscribe("headers"); err != nil {
		t.Fatal(err)
	} else {
		defer cancelLoose()
	}
	waitForTopicMesh(t, []*Host{a, loose}, "headers")

	if err := loose.Publish(context.Background(), "headers", make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if err := loose.Publish(context.Background(), "headers", []byte("small")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if string(m.Data) != "small" {
			t.Fatalf("delivered a %d-byte message over the cap", len(m.Data))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the small message did not arrive")
	}
}
