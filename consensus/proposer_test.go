package consensus

import (
	"crypto/ed25519"
	"strings"
	"testing"
)

// CometBFT's TestProposerSelection1: powers foo 1000, bar 300, baz 330; the
// set is ordered by name so that ties break the way CometBFT's address order does.
func TestPrioritySelector_MatchesCometBFT(t *testing.T) {
	keys, _ := testKeys(3)
	names := []string{"bar", "baz", "foo"}
	set, err := NewValidatorSet([]Validator{
		{PubKey: keys[0].Public().(ed25519.PublicKey), Power: 300},
		{PubKey: keys[1].Public().(ed25519.PublicKey), Power: 330},
		{PubKey: keys[2].Public().(ed25519.PublicKey), Power: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := NewPrioritySelector(set)
	var got []string
	for h := uint64(1); h <= 99; h++ {
		got = append(got, names[s.Proposer(h, 0)])
	}
	want := `foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar` +
		` foo foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar` +
		` foo baz foo foo bar foo baz foo foo bar foo baz foo foo foo baz bar foo foo foo baz` +
		` foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo` +
		` foo bar foo baz foo foo bar foo baz foo foo bar foo baz foo foo`
	if strings.Join(got, " ") != want {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	// Random access gives the same answers as walking forward; round r of
	// height h is r further increments.
	fresh := NewPrioritySelector(set)
	for _, h := range []uint64{50, 3, 99, 1} {
		if names[fresh.Proposer(h, 0)] != got[h-1] {
			t.Fatalf("height %d differs when asked out of order", h)
		}
	}
	if names[fresh.Proposer(1, 2)] != got[2] {
		t.Fatal("proposer(1, 2) differs from proposer(3, 0)")
	}
}

func TestPrioritySelector_EqualPowersRotate(t *testing.T) {
	_, set := testKeys(4)
	s := NewPrioritySelector(set)
	for h := uint64(1); h < 20; h++ {
		for r := Round(0); r < 6; r++ {
			if got, want := s.Proposer(h, r), int((h-1+uint64(r))%4); got != want {
				t.Fatalf("proposer(%d,%d) = %d, want %d", h, r, got, want)
			}
		}
	}
}

func TestPrioritySelector_ProportionalToPower(t *testing.T) {
	keys, _ := testKeys(3)
	powers := []int64{1, 2, 7}
	var vs []Validator
	for i, p := range powers {
		vs = append(vs, Validator{PubKey: keys[i].Public().(ed25519.PublicKey), Power: p})
	}
	set, _ := NewValidatorSet(vs)
	s := NewPrioritySelector(set)
	count := make([]int64, 3)
	for h := uint64(1); h <= 1000; h++ {
		count[s.Proposer(h, 0)]++
	}
	for i, p := range powers {
		if count[i] != p*100 {
			t.Fatalf("validator %d proposed %d of 1000, want %d", i, count[i], p*100)
		}
	}
}
