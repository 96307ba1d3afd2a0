package ledger

import (
	"fmt"
	"sort"
	"strings"
)

// faultRoles is a protocol whose failures fault[R] reports; names says
// what its faults wrap and how they name who is blamed.
type faultRoles interface {
	names() faultNames
}

// faultNames is the error a protocol's faults wrap and how its two blamed
// roles are named in their messages.
type faultNames struct {
	sentinel          error
	dealer, recipient string
}

// ceremonyRoles are the roles of the verified ceremony: dealers and
// recipients are both validator indices.
type ceremonyRoles struct{}

func (ceremonyRoles) names() faultNames {
	return faultNames{sentinel: ErrCeremony, dealer: "dealer", recipient: "validator"}
}

// reshareRoles are the roles of a resharing: a dealer is an index in the
// old committee, a recipient one in the new.
type reshareRoles struct{}

func (reshareRoles) names() faultNames {
	return faultNames{sentinel: ErrReshare, dealer: "old validator", recipient: "new validator"}
}

// The constructors of each protocol's faults: blaming a dealer, a
// recipient, or nobody; and joinFaults, joinReshareFaults order a run's
// faults (dealers first, then recipients, then unattributed; by index) and
// return the first with the rest in More.
var (
	dealerFault    = blameDealer[ceremonyRoles]
	recipientFault = blameRecipient[ceremonyRoles]
	unattributed   = blameNobody[ceremonyRoles]
	joinFaults     = joinFaultList[ceremonyRoles]

	reshareDealerFault    = blameDealer[reshareRoles]
	reshareRecipientFault = blameRecipient[reshareRoles]
	reshareUnattributed   = blameNobody[reshareRoles]
	joinReshareFaults     = joinFaultList[reshareRoles]
)

// fault is a failed ceremony or resharing, naming who is to blame: at most
// one of Dealer and Recipient is >= 0, and both are -1 when the failure is
// not attributable. CeremonyFault and ReshareFault are its instances.
type fault[R faultRoles] struct {
	// Dealer is the index of the dealer blamed, or -1.
	Dealer int
	// Recipient is the index of the recipient blamed, or -1.
	Recipient int
	Reason    string
	// More lists further, independent faults found in the same run.
	More []*fault[R]
}

func (f *fault[R]) Error() string {
	var r R
	var b strings.Builder
	b.WriteString(r.names().sentinel.Error())
	b.WriteString(": ")
	b.WriteString(f.one())
	for _, m := range f.More {
		b.WriteString("; also ")
		b.WriteString(m.one())
	}
	return b.String()
}

func (f *fault[R]) one() string {
	var r R
	switch {
	case f.Dealer >= 0:
		return fmt.Sprintf("%s %d is faulty: %s", r.names().dealer, f.Dealer, f.Reason)
	case f.Recipient >= 0:
		return fmt.Sprintf("%s %d is faulty: %s", r.names().recipient, f.Recipient, f.Reason)
	}
	return "unattributed failure: " + f.Reason
}

// Unwrap makes errors.Is(err, ErrCeremony) hold for a CeremonyFault and
// errors.Is(err, ErrReshare) for a ReshareFault.
func (f *fault[R]) Unwrap() error {
	var r R
	return r.names().sentinel
}

// Blamed returns the index blamed (Dealer if set, else Recipient), or -1.
func (f *fault[R]) Blamed() int {
	if f.Dealer >= 0 {
		return f.Dealer
	}
	return f.Recipient
}

func blameDealer[R faultRoles](d int, format string, args ...any) *fault[R] {
	return &fault[R]{Dealer: d, Recipient: -1, Reason: fmt.Sprintf(format, args...)}
}

func blameRecipient[R faultRoles](r int, format string, args ...any) *fault[R] {
	return &fault[R]{Dealer: -1, Recipient: r, Reason: fmt.Sprintf(format, args...)}
}

func blameNobody[R faultRoles](format string, args ...any) *fault[R] {
	return &fault[R]{Dealer: -1, Recipient: -1, Reason: fmt.Sprintf(format, args...)}
}

// joinFaultList orders faults (dealers first, then recipients, then
// unattributed; by index) and returns the first with the rest in More.
func joinFaultList[R faultRoles](fs []*fault[R]) *fault[R] {
	if len(fs) == 0 {
		return nil
	}
	rank := func(f *fault[R]) (int, int) {
		switch {
		case f.Dealer >= 0:
			return 0, f.Dealer
		case f.Recipient >= 0:
			return 1, f.Recipient
		}
		return 2, 0
	}
	sort.SliceStable(fs, func(a, b int) bool {
		ra, ia := rank(fs[a])
		rb, ib := rank(fs[b])
		if ra != rb {
			return ra < rb
		}
		return ia < ib
	})
	out := *fs[0]
	out.More = append([]*fault[R](nil), fs[1:]...)
	return &out
}
