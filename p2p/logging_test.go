package p2p

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Both of libp2p's loggers end up in our slog handler, filtered by level.
func TestRouteLibp2pLogs(t *testing.T) {
	var buf syncBuffer
	RouteLibp2pLogs(slog.NewTextHandler(&buf, nil), slog.LevelWarn)
	defer RouteLibp2pLogs(slog.NewTextHandler(os.Stderr, nil), slog.LevelError)

	zl := golog.Logger("zkbank-test-golog") // as gossipsub and the DHT log
	zl.Errorw("gossip failure", "peer", "12D3")
	zl.Infow("gossip chatter")
	sl := gologshim.Logger("zkbank-test-shim") // as go-libp2p logs
	sl.Warn("swarm warning", "addr", "/ip4/127.0.0.1")
	sl.Debug("swarm chatter")

	out := buf.String()
	for _, want := range []string{
		"gossip failure", "peer=12D3", "logger=zkbank-test-golog",
		"swarm warning", "addr=/ip4/127.0.0.1", "logger=zkbank-test-shim",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("routed logs lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chatter") {
		t.Errorf("records below the level got through:\n%s", out)
	}
}
