package consensus

import (
	"errors"
	"testing"
)

func testCert(t *testing.T, h *harness, signers ...int) *CommitCertificate {
	c := &CommitCertificate{Height: 1, Round: 0, BlockID: HashValue(valX)}
	for _, i := range signers {
		v := h.vote(Precommit, i, 0, valX)
		c.Sigs = append(c.Sigs, CommitSig{Validator: i, Extension: v.Extension, Signature: v.Signature})
	}
	return c
}

func TestVerifyCommit(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	if err := VerifyCommit(testChain, h.vals, testCert(t, h, 0, 1, 3)); err != nil {
		t.Fatal(err)
	}
	cases := map[string]*CommitCertificate{
		"two of four": testCert(t, h, 0, 1),
		"repeated":    testCert(t, h, 0, 1, 1),
		"unordered":   testCert(t, h, 1, 0, 2),
		"nil":         nil,
	}
	forged := testCert(t, h, 0, 1, 2)
	forged.Sigs[2].Extension = []byte("swapped share")
	cases["extension swapped"] = forged
	other := testCert(t, h, 0, 1, 2)
	other.Round = 1
	cases["other round"] = other
	for name, c := range cases {
		if err := VerifyCommit(testChain, h.vals, c); !errors.Is(err, ErrInvalidCommit) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
