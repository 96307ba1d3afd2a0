// Package version says which zkbank this binary is: the software version an
// operator reads, and the wire-protocol number peers compare.
//
// It is a leaf: it imports nothing of this module, so every package may use
// it. The p2p package does not: it gets the identify agent string, built from
// these values by the node, through p2p.Config.UserAgent.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Protocol is the wire-protocol version of this zkbank. Two nodes talk only
// when their numbers are equal: a node refuses, right after identify, a peer
// whose agent names another number (docs/P2P.md, "Roles, gating and limits").
//
// It changes (by one) whenever anything two nodes exchange changes
// incompatibly: the encoding or meaning of blocks, consensus messages and
// their vote extensions, transfer envelopes and uploads, or the framing and
// payloads of any /zkbank/ p2p protocol. A change a peer of the previous
// number would still read correctly does not bump it; a new protocol id (a
// new /zkbank/<name>/<n>) does not either, since old nodes just do not serve
// it.
//
// 3: attestations (consensus vote type 3) and blocks that carry them (block
// version 7).
// 2: blocks carry validator-set changes (block version 6).
const Protocol = 3

// version is set at link time to override the module version:
//
//	go build -ldflags "-X github.com/zkbank/zkbank/version.version=v0.3.0" ./cmd/zkbank
var version string

// Info describes the running binary.
type Info struct {
	// Version is the software version: the -X override, else the main
	// module's released version from the build info, else "devel-" and the
	// source revision when the binary was built from a checkout, else
	// "devel".
	Version string `json:"version"`
	// Protocol is the wire-protocol version (the constant Protocol).
	Protocol int `json:"protocol"`
	// Go is the Go toolchain that built the binary.
	Go string `json:"go"`
	// Commit is the source revision the binary was built from ("+dirty" when
	// the checkout had local changes), or "unknown".
	Commit string `json:"commit"`
}

// Get returns the running binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return info(bi, version)
}

// Version returns the software version (Get().Version).
func Version() string { return Get().Version }

// info computes Info from build information (nil when the binary has none)
// and the link-time override.
func info(bi *debug.BuildInfo, override string) Info {
	in := Info{Protocol: Protocol, Go: runtime.Version(), Commit: "unknown"}
	var modVersion string
	if bi != nil {
		modVersion = bi.Main.Version
		var rev string
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			in.Commit = rev
			if dirty {
				in.Commit += "+dirty"
			}
		}
	}
	switch {
	case override != "":
		in.Version = override
	case modVersion != "" && modVersion != "(devel)" && !fromCheckout(modVersion, in.Commit):
		in.Version = modVersion
	case in.Commit != "unknown":
		in.Version = "devel-" + shortRev(in.Commit)
	default:
		in.Version = "devel"
	}
	return in
}

// fromCheckout reports whether a module version is the pseudo-version the go
// command stamps on a build from a checkout (v0.0.0-<time>-<rev12>[+dirty]),
// as opposed to a released version.
func fromCheckout(modVersion, commit string) bool {
	rev, _ := strings.CutSuffix(commit, "+dirty")
	return len(rev) >= 12 && strings.Contains(modVersion, "-"+rev[:12])
}

// shortRev keeps the first 12 characters of a revision and its "+dirty".
func shortRev(commit string) string {
	rev, dirty := strings.CutSuffix(commit, "+dirty")
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}
