package testnet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
)

// Validators must never outlive the testnet that started them, however it
// dies. Two mechanisms make sure of it: on Linux every validator gets
// SIGTERM as its parent-death signal (sysProcAttr), and on every system its
// standard input is the read end of a "lifeline" pipe whose only write end
// the testnet holds, so EOF on it means the testnet is gone.

// ParentFDFlag is the hidden `zkbank node` flag naming the inherited
// descriptor of the lifeline pipe.
const ParentFDFlag = "exit-with-parent-fd"

// lifelineFD is where Start puts the lifeline in a validator: its standard
// input, the one inherited descriptor that Windows supports too.
const lifelineFD = 0

// WithParent returns a context that is cancelled when the inherited
// descriptor fd (0 is standard input) reaches EOF, so a validator shuts down
// cleanly once the testnet that started it has exited, been killed or crashed.
func WithParent(ctx context.Context, fd int, log *slog.Logger) (context.Context, context.CancelFunc, error) {
	f := os.Stdin // on Windows its handle is not 0
	if fd != 0 {
		f = os.NewFile(uintptr(fd), "testnet-lifeline")
	}
	if f == nil {
		return nil, nil, fmt.Errorf("--%s %d: not a file descriptor", ParentFDFlag, fd)
	}
	// A bad descriptor must fail the start, not read as "parent gone" later.
	if _, err := f.Stat(); err != nil {
		return nil, nil, fmt.Errorf("--%s %d: %w", ParentFDFlag, fd, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		// Nobody writes to the pipe: Copy returns when the last writer, the
		// testnet process, is gone.
		_, err := io.Copy(io.Discard, f)
		if err == nil {
			err = io.EOF // Copy reports EOF as success
		}
		log.Warn("the testnet that started this node is gone; stopping", "fd", fd, "read", err)
		cancel()
	}()
	return ctx, cancel, nil
}

// lockedThread runs functions on one OS thread that lives until close:
// Linux sends the parent-death signal when the thread that forked a child
// exits, not the process, and a Go thread exits whenever a goroutine locked
// to it returns, so validators are forked here and nowhere else.
type lockedThread struct{ jobs chan func() }

func startLockedThread() *lockedThread {
	t := &lockedThread{jobs: make(chan func())}
	go func() {
		// Never unlocked, so no other goroutine runs (and ends) on this thread.
		runtime.LockOSThread()
		for f := range t.jobs {
			f()
		}
	}()
	return t
}

// do runs f on the thread and returns its error.
func (t *lockedThread) do(f func() error) error {
	errc := make(chan error, 1)
	t.jobs <- func() { errc <- f() }
	return <-errc
}

// close ends the thread; call it only once every child it forked has exited.
func (t *lockedThread) close() { close(t.jobs) }
