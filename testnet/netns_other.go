//go:build !linux

package testnet

import (
	"context"
	"errors"
	"net"

	"github.com/zkbank/zkbank/genesis"
)

var errNetnsLinux = errors.New("--netns needs Linux network namespaces: run without --netns")

// OpenNetwork needs Linux.
func OpenNetwork(dir string, g *genesis.Genesis) (*Network, error) { return nil, errNetnsLinux }

// AttachNetwork needs Linux.
func AttachNetwork(dir string) (*Network, error) { return nil, errNetnsLinux }

// Up needs Linux.
func (n *Network) Up(validators, fullNodes int) error { return errNetnsLinux }

// Down needs Linux.
func (n *Network) Down() error { return errNetnsLinux }

// Command needs Linux.
func (n *Network) Command(name string, argv []string) ([]string, error) { return nil, errNetnsLinux }

// Partition needs Linux.
func (n *Network) Partition(name string) error { return errNetnsLinux }

// Heal needs Linux.
func (n *Network) Heal(name string) error { return errNetnsLinux }

// DialContext needs Linux.
func (n *Network) DialContext(name string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	return nil, errNetnsLinux
}
