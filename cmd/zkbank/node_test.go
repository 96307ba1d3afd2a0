package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zkbank/zkbank/node"
)

// `node init --genesis` for a key that is no validator's creates a full
// node's home: it needs a bootstrap peer, copies the genesis verbatim and
// records the one bootstrap address in node.json.
func TestNodeInitCreatesAFullNodeHome(t *testing.T) {
	_, gen := fakeChain(t)
	home := filepath.Join(t.TempDir(), "f0")
	args := []string{"node", "init", "--home", home, "--genesis", gen, "--p2p", "/ip4/127.0.0.1/tcp/27050", "--api", "http://127.0.0.1:27150"}
	code, _, stderr := zk(t, args...)
	oneErrorLine(t, code, stderr, 1, "full node", "--bootstrap")

	boot := "/ip4/127.0.0.1/tcp/27000/p2p/12D3KooWN4J6nnAygb85L2RbjNqbRCsoqeLNMQT9qJGWPbTNuG7Z"
	code, stdout, stderr := zk(t, append(args, "--bootstrap", boot)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "full node home") {
		t.Fatalf("stderr %q does not say the home is a full node's", stderr)
	}
	var info node.InitInfo
	if err := json.Unmarshal([]byte(stdout), &info); err != nil || info.PeerID == "" || info.ConsensusPub == "" {
		t.Fatalf("stdout %q is not the node's identity: %v", stdout, err)
	}
	want, _ := os.ReadFile(gen)
	got, err := os.ReadFile(node.Home{Dir: home}.Genesis())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("genesis not copied verbatim: %v", err)
	}
	var lc node.LocalConfig
	b, _ := os.ReadFile(node.Home{Dir: home}.Config())
	if err := json.Unmarshal(b, &lc); err != nil || len(lc.Bootstrap) != 1 || lc.Bootstrap[0] != boot {
		t.Fatalf("node.json %s: %v", b, err)
	}
}
