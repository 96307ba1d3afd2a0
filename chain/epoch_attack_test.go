package chain

import (
	"bytes"
	"testing"

	"github.com/zkbank/zkbank/store"
)

// A validator that restores a snapshot taken while a change is pending (the
// carrying block's height, or a quiet one) must know the change: otherwise
// it never switches, keeps proposing transfers in quiet heights and is left
// behind on the old committee at the switch. The snapshot carries the
// pending change (it is part of the certified root) and the install
// records it.
func TestAttack_SnapshotRestoreDuringPendingChangeKeepsTheChange(t *testing.T) {
	n := snapshotNet(t, 4)
	good := takeChanges(n)
	n.stepUntil(7)
	p := int(n.height+1) % len(n.vals)
	n.vals[p].app.proposeChange = func() []byte { return good }
	n.step(p) // height 8 carries the change and is a snapshot height
	n.vals[p].app.proposeChange = nil
	if n.height != 8 || n.vals[0].app.Pending() == nil {
		t.Fatalf("height %d, pending %+v", n.height, n.vals[0].app.Pending())
	}
	info, chunks := n.snapshotOf(0, 8)
	last, err := StoredCommit(n.vals[0].st, 8)
	if err != nil {
		t.Fatal(err)
	}
	v := n.vals[3]
	fresh := &failingStore{Memory: store.NewMemory()}
	if err := RestoreSnapshot(fresh, n.c.p, testChain, n.c.vals, info, chunks, last); err != nil {
		t.Fatal(err)
	}
	v.st, v.cfg.Store = fresh, fresh
	app := n.restart(3)
	if app.Pending() == nil {
		t.Fatal("a validator restored from the snapshot of the change's block does not know the change is pending")
	}
	// It would propose transfers in a quiet height, and accept the old
	// committee's block at the switch height.
	if p := app.Pending(); p.Start != 8+SwitchDelay || !bytes.Equal(p.Raw, good) {
		t.Fatalf("restored pending change %+v", p)
	}
}
