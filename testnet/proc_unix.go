//go:build unix && !linux

package testnet

import (
	"os"
	"syscall"
)

// A validator runs in its own process group: a Ctrl-C at the terminal reaches
// only the testnet, which then stops the validators in order; without a
// parent-death signal here, the lifeline pipe alone stops them if it dies.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
