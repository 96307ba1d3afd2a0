package testnet

import (
	"os"
	"syscall"
)

// A validator runs in its own process group, so a Ctrl-C at the terminal
// reaches only the testnet, which then stops the validators in order; and it
// gets SIGTERM if the testnet dies first (forked on a lockedThread, since
// Linux ties Pdeathsig to the forking thread).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
