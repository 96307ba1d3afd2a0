package client

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckFunds_Wording(t *testing.T) {
	if err := CheckFunds(Balance{Amount: 500}, 500, false, 1); err != nil {
		t.Fatalf("exact balance refused: %v", err)
	}
	err := CheckFunds(Balance{Amount: 500, Pending: 250}, 501, false, 1)
	var ie *InsufficientError
	if !errors.As(err, &ie) || ie.Available != 500 || ie.Amount != 501 {
		t.Fatalf("CheckFunds = %v", err)
	}
	want := "insufficient funds: available 5.00, amount 5.01 (2.50 received is pending: apply it to make it spendable); nothing was sent"
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err, want)
	}
	err = CheckFunds(Balance{Amount: 100}, 2000, true, 1)
	if !strings.HasPrefix(err.Error(), "declined: insufficient credit (available 1.00, charge 20.00)") {
		t.Fatalf("card: %v", err)
	}
}

func TestAttack_OverdraftIsRefusedWithNothingSubmitted(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	other := newHolder(c.com.p)
	c.fund(h, 1, 1_000)
	c.fund(other, 2, 0)
	c.each(func(n *fakeNode) { n.height = 3 })
	m, err := NewMulti(c.gen, WithParams(c.com.p))
	if err != nil {
		t.Fatal(err)
	}
	called := false
	_, err = m.Pay(ctx(t), h, false, []Payee{{To: other.ID(), Amount: 1_001}}, &PayHooks{Submitted: func(string, uint64) { called = true }, Built: func(uint64, Balance, int) { called = true }})
	var ie *InsufficientError
	if !errors.As(err, &ie) || ie.Available != 1_000 {
		t.Fatalf("Pay = %v, want InsufficientError with available 10.00", err)
	}
	c.each(func(n *fakeNode) {
		if n.submitted != 0 {
			t.Errorf("node %d received %d uploads for a refused overdraft", n.index, n.submitted)
		}
	})
	if called {
		t.Error("submitted callback ran for a refused overdraft")
	}
	if _, err := m.Pay(ctx(t), h, false, []Payee{{To: h.ID(), Amount: 1}}, nil); err == nil {
		t.Error("paying oneself was not refused")
	}
	stranger := newHolder(c.com.p)
	if _, err := m.Pay(ctx(t), h, false, []Payee{{To: stranger.ID(), Amount: 1}}, nil); !errors.Is(err, ErrUnknownAccount) || !strings.Contains(err.Error(), "nothing was sent") {
		t.Errorf("paying an unknown account = %v", err)
	}
	if _, err := m.ApplyPending(ctx(t), h, nil); !errors.Is(err, ErrNothingPending) {
		t.Errorf("ApplyPending with nothing pending = %v", err)
	}
	c.each(func(n *fakeNode) {
		if n.submitted != 0 {
			t.Errorf("node %d received an upload", n.index)
		}
	})
}
