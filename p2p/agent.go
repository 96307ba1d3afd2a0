package p2p

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Agent is what a zkbank node announces in libp2p identify, as
//
//	zkbank/<version> (protocol <n>; <role>)
//
// e.g. "zkbank/v0.3.0 (protocol 1; validator)". Protocol is the wire-protocol
// number: nodes with different numbers refuse each other (see watchIdentify).
// Version and Role are informational: a peer declares them itself, so they
// never grant anything (who is a validator comes from the genesis).
type Agent struct {
	Version  string
	Protocol int
	Role     string
}

// DefaultUserAgent is the agent of a host whose Config leaves UserAgent
// empty: protocol 0, which no node speaks, so such a host only talks to
// others like it (tests); a node always sets its own.
var DefaultUserAgent = Agent{Version: "devel", Protocol: 0, Role: "unknown"}.String()

// Bounds of an agent's parts: they become log fields and metric labels.
const (
	maxAgentVersion = 64
	maxAgentRole    = 32
)

// ErrAgent reports an agent string that is not a zkbank agent.
var ErrAgent = errors.New("p2p: not a zkbank agent")

const agentPrefix = "zkbank/"

func (a Agent) String() string {
	return fmt.Sprintf("%s%s (protocol %d; %s)", agentPrefix, a.Version, a.Protocol, a.Role)
}

// ParseAgent parses a zkbank agent string; anything else is ErrAgent.
func ParseAgent(s string) (Agent, error) {
	bad := func(why string) (Agent, error) {
		return Agent{}, fmt.Errorf("%w: %q: %s", ErrAgent, truncate(s, 96), why)
	}
	rest, ok := strings.CutPrefix(s, agentPrefix)
	if !ok {
		return bad("no zkbank/ prefix")
	}
	ver, rest, ok := strings.Cut(rest, " (protocol ")
	if !ok {
		return bad("no (protocol <n>; <role>)")
	}
	num, rest, ok := strings.Cut(rest, "; ")
	if !ok {
		return bad("no role")
	}
	role, ok := strings.CutSuffix(rest, ")")
	if !ok {
		return bad("no closing parenthesis")
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strconv.Itoa(n) != num {
		return bad("protocol is not a number")
	}
	if !token(ver, maxAgentVersion) {
		return bad("version is empty, too long or has characters outside [A-Za-z0-9.+_-]")
	}
	if !token(role, maxAgentRole) {
		return bad("role is empty, too long or has characters outside [A-Za-z0-9.+_-]")
	}
	return Agent{Version: ver, Protocol: n, Role: role}, nil
}

// token: 1 to max characters of [A-Za-z0-9.+_-].
func token(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '+', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
