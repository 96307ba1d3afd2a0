package chain

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// The shard-freeze attack of DESIGN §8.4: flood one shard with zero-value
// transfers so that its state's noise grows until no balance of the shard
// decrypts. With client ciphertexts the attacker crafted their noise; with
// sealed uploads validators encrypt every piece with honestly sampled
// randomness, so all the attacker has left is volume. 250 accounts of shard 0
// (with the honest alice, carol and dave: 253 of its 256 lanes) each send
// a zero-value transfer to the next spammer of the shard in every block (a
// block carries at most MaxCreditsPerLane payments of a shard into one
// lane, so a full block of spam spreads its receivers), naming the height at which
// their previous one is applied (their balance, zero, is known in advance),
// for a full block of 250 spam transfers per height until zeroSpamTarget of
// them are decided; alice and carol meanwhile pay in the same shard (each
// after its previous transfer is applied, as an honest wallet does). The
// honest transfers keep committing, the honest balances (and sampled
// spammers') decrypt to exactly what was paid, and every validator's book
// stays identical.
//
// 10,000 spam transfers are 40 full blocks (44 heights with the pipeline).
// Measured on the 2-core test machine: about 62 s for this test alone when
// the machine is otherwise idle (about 95 CPU-seconds: the validators of a
// height run concurrently), about 3 minutes while other builds share it.
// Under -short it stops at 1,000.
func TestAttack_ZeroValueSpamIntoOneShard(t *testing.T) {
	t.Parallel()
	const spammers = 250
	target := zeroSpamTarget
	if testing.Short() {
		target = 1000
	}
	users := []genesisUser{{"alice", 1000}, {"carol", 500}, {"dave", 0}}
	for i := 0; i < spammers; i++ {
		users = append(users, genesisUser{spammer(i), 0})
	}
	n := newChainNetGenesis(t, testCommittee(t), users)
	n.parallel = true
	for name, u := range n.users {
		if a, ok := n.vals[0].app.book.Account(u.id); !ok || a.Shard != 0 {
			t.Fatalf("%s is not in shard 0", name)
		}
	}
	want := map[string]uint64{"alice": 1000, "carol": 500, "dave": 0}
	avail := map[string]uint64{"alice": 1000, "carol": 500}
	var honest []*Upload
	start := time.Now()
	n.step(0)
	sent, spamDecided := 0, 0
	count := func() {
		for _, o := range lastView(n, 0).Outcomes {
			if o.Env != nil && o.Env.From != n.users["alice"].id && o.Env.From != n.users["carol"].id {
				if o.Reason != ledger.Accepted {
					t.Fatalf("a zero-value transfer was decided %v", o.Reason)
				}
				spamDecided++
			}
		}
	}
	for round := 0; sent < target; round++ {
		if round%4 == 0 {
			// Every honest transfer submitted 4 heights ago is applied: the
			// wallets know their balances and may send again.
			// alice's credits from carol wait in her pending balance: she
			// pays from her available one, which only her payments change.
			a := n.transfer("alice", "dave", 7, avail["alice"])
			c := n.transfer("carol", "alice", 3, avail["carol"])
			avail["alice"] -= 7
			avail["carol"] -= 3
			n.submit(a)
			n.submit(c)
			honest = append(honest, a, c)
			want["alice"] = want["alice"] - 7 + 3
			want["carol"] -= 3
			want["dave"] += 7
		}
		batch := min(spammers, target-sent)
		ups := make([]*Upload, batch)
		errs := make([]error, batch)
		var wg sync.WaitGroup
		for w := 0; w < runtime.GOMAXPROCS(0); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < batch; i += runtime.GOMAXPROCS(0) {
					u := n.users[spammer(i)]
					// Submitted at F, acked at F+1, ordered at F+2 and
					// evaluated on the book of F+1, where its previous
					// transfer (ordered at F+1) is applied.
					sub, err := n.b.Build(ledger.TransferSpec{From: u.id, Key: u.key, To: n.users[spammer((i+1)%spammers)].id,
						Amount: 0, Balance: 0, Height: n.vals[0].app.book.Height(), Nonce: u.nonce + 1, Prev: prevOf(u)})
					if err != nil {
						errs[i] = err
						continue
					}
					ups[i] = n.vals[0].open.NewUpload(sub.Sealed, sub.Envelopes, time.Now())
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
			n.users[spammer(i)].nonce++
			n.users[spammer(i)].last = ups[i]
		}
		n.submitAll(ups)
		sent += batch
		n.step(int(n.height+1) % len(n.vals))
		count()
		if round%8 == 7 {
			n.assertStatesIdentical()
		}
	}
	for k := 0; k < 8 && (spamDecided < sent || n.vals[0].app.HasWork(0)); k++ {
		n.step(int(n.height+1) % len(n.vals))
		count()
	}
	if spamDecided != target {
		t.Fatalf("%d zero-value transfers decided, %d sent", spamDecided, target)
	}
	for _, u := range honest {
		for i := range n.vals {
			if r, ok := n.verdict(i, u); !ok || r != ledger.Accepted {
				t.Fatalf("validator %d: an honest transfer decided %v (published: %v)", i, r, ok)
			}
		}
	}
	n.assertBalances(want)
	for _, i := range []int{0, spammers / 2, spammers - 1} {
		if got := n.balance(3, spammer(i)); got != 0 {
			t.Fatalf("spammer %d holds %d", i, got)
		}
	}
	n.assertBooksIdentical()
	t.Logf("%d zero-value transfers and %d honest ones in %d heights, %v", sent, len(honest), n.height, time.Since(start).Round(time.Second))
}

// zeroSpamTarget is how many zero-value transfers TestAttack_ZeroValueSpamIntoOneShard sends.
const zeroSpamTarget = 10000

func spammer(i int) string { return fmt.Sprintf("spammer%03d", i) }

// prevOf is the ID of u's last operation (each spammer's previous transfer
// was ordered in the previous block), zero before its first.
func prevOf(u *user) [32]byte {
	if u.last == nil {
		return [32]byte{}
	}
	return idOf(u.last)
}
