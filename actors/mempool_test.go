package actors

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/ledger"
)

// One account cannot fill the mempool: past its cap of waiting uploads it is
// refused (ErrSenderBusy) while other accounts still get in, and its slots
// free up when a block commits its uploads. A full pool is ErrPoolFull.
func TestMempoolCapsWaitingUploadsPerAccount(t *testing.T) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer sys.Shutdown()
	m := NewMempool(sys, 12)
	upload := func(i byte, from ledger.AccountID) *chain.Upload {
		u := &chain.Upload{Hash: [32]byte{i}, Envs: []ledger.Envelope{{From: from, Nonce: uint64(i), CTHash: [32]byte{i}}}}
		return u
	}
	spammer, honest := ledger.AccountID{1}, ledger.AccountID{2}
	var first *chain.Upload
	for i := byte(0); i < 4; i++ {
		u := upload(i, spammer)
		if first == nil {
			first = u
		}
		if ok, err := m.Add(u, 4); !ok || err != nil {
			t.Fatalf("upload %d: %v %v", i, ok, err)
		}
	}
	if _, err := m.Add(upload(4, spammer), 4); !errors.Is(err, ErrSenderBusy) {
		t.Fatalf("fifth upload of one account: %v, want ErrSenderBusy", err)
	}
	if ok, err := m.Add(upload(5, honest), 4); !ok || err != nil {
		t.Fatalf("another account's upload: %v %v", ok, err)
	}
	m.Committed(&chain.Block{Subs: []chain.SubRef{{CTHash: first.Hash, Envelopes: first.Envs}}})
	if ok, err := m.Add(upload(6, spammer), 4); !ok || err != nil {
		t.Fatalf("after a commit freed a slot: %v %v", ok, err)
	}
	for i := byte(7); i < 14; i++ { // 5 waiting + 7 = 12, the pool's size
		if _, err := m.Add(upload(i, ledger.AccountID{i}), 4); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	if _, err := m.Add(upload(14, ledger.AccountID{14}), 4); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("upload into a full pool: %v, want ErrPoolFull", err)
	}
}
