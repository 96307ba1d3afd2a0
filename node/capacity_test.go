package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// BenchmarkClusterBundledCapacity measures the chain's own capacity, without
// wallet-side balance reads: 4 validators in this process (real libp2p,
// Badger, actors), one shard of 256 accounts, and rounds in which every
// account pays 1 to its neighbour in one 256-lane bundle (so every balance
// stays 1000 and each round can name the latest applied height).
// ZKBANK_CAPACITY_SHARDS=S uses S shards of 256 accounts, one bundle each
// per round.
//
//	go test ./node -run '^$' -bench ClusterBundledCapacity -benchtime 1x
func BenchmarkClusterBundledCapacity(b *testing.B) {
	shards := 1
	if v := os.Getenv("ZKBANK_CAPACITY_SHARDS"); v != "" {
		fmt.Sscan(v, &shards)
	}
	const perShard, rounds = 256, 12
	accounts := perShard * shards
	c := &cluster{t: b, dir: b.TempDir(), p: ledger.MustParams(ledger.ZKB128), users: map[string]*user{}}
	g := &genesis.Genesis{ChainID: "zkbank-capacity", ParamSet: ledger.ZKB128.Name, Threshold: genesis.DefaultThreshold(4),
		Timeouts: genesis.Timeouts{Propose: "1500ms", Prevote: "500ms", Precommit: "500ms", Delta: "500ms"}, Created: time.Now().UTC()}
	for i := 0; i < 4; i++ {
		home := filepath.Join(c.dir, fmt.Sprintf("v%d", i))
		apiURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
		info, err := Init(home, []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(b))}, apiURL, nil)
		if err != nil {
			b.Fatal(err)
		}
		g.Validators = append(g.Validators, genesis.Validator{Index: i, Name: fmt.Sprintf("v%d", i), PeerID: info.PeerID, P2PAddrs: info.P2PAddrs, ConsensusPub: info.ConsensusPub, API: apiURL, Power: 1})
		c.apis = append(c.apis, apiURL)
	}
	keys := make([]ed25519.PrivateKey, accounts)
	ids := make([]ledger.AccountID, accounts)
	for i := range keys {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		keys[i], ids[i] = priv, ledger.AccountIDOf(pub)
		g.Accounts = append(g.Accounts, genesis.Account{SignPub: hex.EncodeToString(pub), Balance: 1000})
	}
	c.gen = g
	for i := 0; i < 4; i++ {
		if err := g.Save(filepath.Join(c.dir, fmt.Sprintf("v%d", i), "genesis.json")); err != nil {
			b.Fatal(err)
		}
	}
	c.cancel = make([]context.CancelFunc, 4)
	c.done = make([]chan error, 4)
	for i := 0; i < 4; i++ {
		c.start(i)
	}
	defer func() {
		for i := range c.cancel {
			c.stop(i)
		}
	}()
	applied := func() uint64 {
		min := uint64(0)
		for i := range c.apis {
			var st api.Status
			if err := c.getJSON(i, api.PathStatus, &st); err != nil || !st.Ready {
				return 0
			}
			if min == 0 || st.AppliedHeight < min {
				min = st.AppliedHeight
			}
		}
		return min
	}
	for deadline := time.Now().Add(5 * time.Minute); applied() < 1; {
		if time.Now().After(deadline) {
			b.Fatal("validators not ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
	builder := c.dealer()

	b.ResetTimer()
	start := time.Now()
	var finality []time.Duration
	var buildTime time.Duration
	committed := 0
	for r := 1; r <= rounds; r++ {
		h := applied()
		var last []string
		t0 := time.Now()
		var raws [][]byte
		for s := 0; s < shards; s++ {
			for l := 0; l < perShard; l++ {
				i := s*perShard + l
				spec := ledger.TransferSpec{From: ids[i], Key: keys[i], To: ids[s*perShard+(l+1)%perShard], Amount: 100, Balance: 1000, Height: h, Nonce: uint64(r)}
				sub, err := builder.Build(spec)
				if err != nil {
					b.Fatal(err)
				}
				raw, _ := sub.MarshalBinary()
				raws = append(raws, raw)
			}
		}
		buildTime += time.Since(t0)
		sent := time.Now()
		for s, raw := range raws {
			node := (r + s) % 4
			resp, err := http.Post(c.apis[node]+api.PathTransfers, api.ContentBinary, bytes.NewReader(raw))
			if err != nil {
				b.Fatal(err)
			}
			var sr api.SubmitResponse
			if resp.StatusCode != http.StatusAccepted {
				msg, _ := io.ReadAll(resp.Body)
				b.Fatalf("submit: %d %s", resp.StatusCode, msg)
			}
			_ = json.NewDecoder(resp.Body).Decode(&sr)
			resp.Body.Close()
			last = append(last, sr.IDs[len(sr.IDs)-1])
		}
		for _, id := range last {
			for {
				var st api.TransferStatus
				_ = c.getJSON(0, api.PathTransfer+id, &st)
				if st.Status == api.StatusRejected {
					b.Fatalf("round %d rejected: %+v", r, st)
				}
				if st.Status == api.StatusCommitted {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		finality = append(finality, time.Since(sent))
		committed += accounts
		// The next round names a height where this round is applied everywhere.
		for target := applied(); applied() <= target; {
			time.Sleep(20 * time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	sort.Slice(finality, func(i, j int) bool { return finality[i] < finality[j] })
	b.ReportMetric(float64(committed)/elapsed.Seconds(), "committed-transfers/s")
	b.ReportMetric(finality[len(finality)/2].Seconds(), "finality-p50-s")
	b.ReportMetric(finality[len(finality)-1].Seconds(), "finality-max-s")
	b.ReportMetric(buildTime.Seconds()/float64(rounds), "round-build-s")
	b.ReportMetric(float64(rounds*accounts), "transfers")
}
