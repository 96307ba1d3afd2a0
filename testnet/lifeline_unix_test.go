//go:build unix

package testnet

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// liveness bounds how long a test waits for processes to go away; it fails
// a hung test and says nothing about speed.
const liveness = 60 * time.Second

// parentTestnet is the test binary running fakeTestnet, with its stdout and
// stderr on one pipe as `zkbank testnet 2>&1 | tee log` has them.
type parentTestnet struct {
	cmd    *exec.Cmd
	done   chan error
	output *os.File // the read end, tee's side of the pipe
	layout Layout
	pids   []int // the validators
}

// startParentTestnet starts a fake testnet in its own process group and
// waits for its live status line, so every validator is up.
func startParentTestnet(t *testing.T, validators int, env ...string) *parentTestnet {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tn")
	base := freePorts(t, 2*validators)
	cmd := exec.Command(exe, "--dir", dir, "--validators", strconv.Itoa(validators),
		"--p2p-port", strconv.Itoa(base), "--api-port", strconv.Itoa(base+validators))
	cmd.Env = append(append(os.Environ(), "ZKBANK_FAKE_TESTNET=1", "ZKBANK_FAKE_NODE="), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's foreground job
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	tn := &parentTestnet{cmd: cmd, done: make(chan error, 1), output: r, layout: Layout{Dir: dir}}
	go func() { tn.done <- cmd.Wait() }()
	t.Cleanup(func() {
		// Leave nothing running, whatever the test concluded.
		cmd.Process.Kill()
		for _, pid := range tn.pids {
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		r.Close()
	})

	out := &syncBuf{}
	go io.Copy(out, r) // ends when the test closes r
	deadline := time.Now().Add(liveness)
	for !strings.Contains(out.String(), "height ") {
		select {
		case err := <-tn.done:
			t.Fatalf("testnet exited before its status line (%v):\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status line after %s:\n%s", liveness, out.String())
		}
	}
	for i := 0; i < validators; i++ {
		b, err := os.ReadFile(tn.layout.PIDFile(i))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("pid file of node-%d: %v", i, err)
		}
		tn.pids = append(tn.pids, pid)
	}
	return tn
}

// alive reports whether pid still runs; an exited process not yet reaped (a
// zombie, under an init that does not reap orphans) counts as gone.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return runtime.GOOS != "linux" // without /proc, a zombie looks alive
	}
	// The state letter follows the parenthesized command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// waitGone fails the test if any of pids still runs after the liveness bound.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(liveness)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("validators %v outlived their testnet", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestValidatorsDieWithKilledTestnet(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"validators stop on SIGTERM", nil},
		// Only the lifeline pipe can stop them: the parent-death signal is ignored.
		{"validators ignore SIGTERM", []string{"FAKE_NODE_IGNORE_TERM=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := startParentTestnet(t, 2, tc.env...)
			if err := tn.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-tn.done
			waitGone(t, tn.pids)
			for i := range tn.pids {
				logb, _ := os.ReadFile(tn.layout.Log(i))
				if !strings.Contains(string(logb), "fake node: stopping") {
					t.Fatalf("node-%d did not shut down cleanly; log:\n%s", i, logb)
				}
			}
		})
	}
}

func TestCtrlCWithClosedStdoutStopsValidators(t *testing.T) {
	tn := startParentTestnet(t, 2)
	tn.output.Close() // tee died
	// Ctrl-C reaches the terminal's foreground process group, not the
	// validators, which have their own.
	if err := syscall.Kill(-tn.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-tn.done:
	case <-time.After(liveness):
		t.Fatalf("testnet still running %s after Ctrl-C", liveness)
	}
	if ws, ok := tn.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("testnet died of %v instead of stopping its validators", ws.Signal())
	}
	if err != nil {
		t.Fatalf("testnet exit: %v", err)
	}
	waitGone(t, tn.pids)
	for i := range tn.pids {
		if _, err := os.Stat(tn.layout.PIDFile(i)); err == nil {
			t.Fatalf("node-%d pid file left behind: the testnet did not finish stopping", i)
		}
		logb, _ := os.ReadFile(tn.layout.Log(i))
		if !strings.Contains(string(logb), "fake node: stopping") {
			t.Fatalf("node-%d was not stopped cleanly; log:\n%s", i, logb)
		}
	}
}
