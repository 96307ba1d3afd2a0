package badgerstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zkbank/zkbank/store"
)

// The crash test re-executes this test binary as a child that commits
// heights in a loop, and SIGKILLs it at a random moment: mid-Commit,
// mid-Prune (DropPrefix), mid-GC or between them. The parent then reopens the
// directory and checks the invariant a node relies on after a crash.
const (
	crashChildEnv = "ZKBANK_STORE_CRASH_CHILD" // set to the store directory in the child
	crashSeedEnv  = "ZKBANK_STORE_CRASH_SEED"  // reproduces a run's kill points
	crashRounds   = 6
	crashWindow   = 4 // heights of states the child keeps (Prune(h-crashWindow+1))
	crashVlogSize = 8 << 20
)

func crashBatch(h uint64) store.Batch {
	return store.Batch{
		Block:    fill(1<<20, h, 1),
		Cert:     fill(512<<10, h, 2),
		States:   []store.ShardState{{Shard: 0, Data: fill(768<<10, h, 3)}, {Shard: 1, Data: fill(768<<10, h, 4)}},
		Statuses: []store.Record{{Key: crashTransferID(h, 0), Value: []byte(fmt.Sprint("applied@", h))}, {Key: crashTransferID(h, 1), Value: []byte("rejected:overdraft")}},
		Meta: []store.Record{
			{Key: []byte("last-credit"), Value: binary.BigEndian.AppendUint64(nil, h)},
			{Key: crashMetaKey(h), Value: []byte{byte(h), 1}},
		},
	}
}

func crashTransferID(h uint64, i int) []byte { return []byte(fmt.Sprintf("transfer-%d-%d", h, i)) }

// crashMetaKey is a metadata key only height h writes.
func crashMetaKey(h uint64) []byte { return []byte(fmt.Sprintf("upload-%d", h)) }

// crashWALRecord starts with its height so the parent can tell records apart.
func crashWALRecord(h uint64) []byte {
	return append(binary.BigEndian.AppendUint64(nil, h), fill(192, h, 5)...)
}

func crashOptions() Options {
	return Options{ValueLogFileSize: crashVlogSize, Logger: slog.New(slog.DiscardHandler)}
}

// crashChild runs until killed; it reports each durable step on stdout.
func crashChild(dir string) {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	s, err := Open(dir, crashOptions())
	if err != nil {
		fail(err)
	}
	last, err := s.LastApplied()
	if err != nil {
		fail(err)
	}
	fmt.Println("ready", last)
	// A child whose parent died must not run forever.
	for h, deadline := last+1, time.Now().Add(30*time.Second); time.Now().Before(deadline); h++ {
		if err := s.Append(h, crashWALRecord(h)); err != nil {
			fail(err)
		}
		fmt.Println("wal", h)
		if err := s.Commit(h, crashBatch(h)); err != nil {
			fail(err)
		}
		fmt.Println("commit", h)
		if h%3 == 0 && h > crashWindow {
			if err := s.Prune(h - crashWindow + 1); err != nil {
				fail(err)
			}
			if err := s.TruncateBefore(h - 1); err != nil {
				fail(err)
			}
		}
		if h%5 == 0 {
			if _, err := s.RunGC(context.Background()); err != nil {
				fail(err)
			}
		}
	}
	fail(errors.New("not killed within 30 s"))
}

type crashAcks struct {
	mu            sync.Mutex
	wal, commit   uint64
	ready         chan struct{}
	childFailures []string
}

func (a *crashAcks) read(sc *bufio.Scanner) {
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		a.mu.Lock()
		switch f[0] {
		case "ready":
			close(a.ready)
		case "wal":
			a.wal = n
		case "commit":
			a.commit = n
		case "error":
			a.childFailures = append(a.childFailures, sc.Text())
		}
		a.mu.Unlock()
	}
}

func TestCrashMidWrite(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(crashSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
	}
	t.Logf("seed %d (rerun with %s=%d)", seed, crashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	var acked crashAcks
	for round := range crashRounds {
		acked.ready = make(chan struct{})
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidWrite$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		readDone := make(chan struct{})
		go func() { acked.read(bufio.NewScanner(out)); close(readDone) }()

		select {
		case <-acked.ready:
		case <-readDone:
			_ = cmd.Wait()
			t.Fatalf("round %d: child exited before opening the store: %v", round, acked.childFailures)
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: child did not open the store", round)
		}
		delay := 10*time.Millisecond + time.Duration(rng.Int64N(int64(400*time.Millisecond)))
		time.Sleep(delay)
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		<-readDone
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v before the kill: %v", round, err, acked.childFailures)
		}
		acked.mu.Lock()
		walAcked, commitAcked := acked.wal, acked.commit
		acked.mu.Unlock()
		last := verifyAfterCrash(t, dir, walAcked, commitAcked)
		t.Logf("round %d: killed after %v; last applied %d (acknowledged %d), WAL acknowledged %d",
			round, delay.Round(time.Millisecond), last, commitAcked, walAcked)
	}
}

// verifyAfterCrash reopens dir and checks: every acknowledged commit and WAL
// record survived; every height up to last applied is complete; nothing of
// a later height is visible; no value is corrupt; the WAL is an in-order run.
func verifyAfterCrash(t *testing.T, dir string, walAcked, commitAcked uint64) uint64 {
	t.Helper()
	s, err := Open(dir, crashOptions())
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer func() { must(t, s.Close()) }()
	last, err := s.LastApplied()
	must(t, err)
	if last < commitAcked || last > commitAcked+1 {
		t.Fatalf("last applied %d, but the child acknowledged commit %d", last, commitAcked)
	}
	for h := uint64(1); h <= last; h++ {
		want := crashBatch(h)
		mustGet(t, want.Block)(s.Block(h))
		mustGet(t, want.Cert)(s.Cert(h))
		for _, r := range want.Statuses {
			mustGet(t, r.Value)(s.Status(r.Key))
		}
		for _, r := range want.Meta[1:] { // [0] is overwritten by every height
			mustGet(t, r.Value)(s.GetMeta(string(r.Key)))
		}
		for _, st := range want.States {
			got, err := s.State(h, st.Shard)
			if h+crashWindow > last || !errors.Is(err, store.ErrNotFound) {
				// Inside the kept window a state must be there; below it,
				// a half-done Prune may leave it, but never corrupt.
				mustGet(t, st.Data)(got, err)
			}
		}
	}
	if last > 0 {
		mustGet(t, binary.BigEndian.AppendUint64(nil, last))(s.GetMeta("last-credit"))
	}
	for h := last + 1; h <= last+2; h++ {
		want := crashBatch(h)
		wantErr(t, store.ErrNotFound)(s.Block(h))
		wantErr(t, store.ErrNotFound)(s.Cert(h))
		wantErr(t, store.ErrNotFound)(s.State(h, 0))
		wantErr(t, store.ErrNotFound)(s.Status(want.Statuses[0].Key))
		wantErr(t, store.ErrNotFound)(s.GetMeta(string(crashMetaKey(h))))
	}
	// No block above last applied, at any height.
	k, err := s.lastKey([]byte{nsBlock})
	must(t, err)
	if lh, _ := parseHeightKey(k); lh != last {
		t.Fatalf("greatest block height %d; want last applied %d", lh, last)
	}

	recs, err := s.Records()
	must(t, err)
	var prev uint64
	for i, rec := range recs {
		h := binary.BigEndian.Uint64(rec)
		mustGet(t, crashWALRecord(h))(rec, nil)
		if i > 0 && h != prev && h != prev+1 { // a restarted child re-appends its height
			t.Fatalf("WAL record %d is for height %d after %d", i, h, prev)
		}
		prev = h
	}
	if walAcked > 0 && (len(recs) == 0 || prev < walAcked) {
		t.Fatalf("WAL ends at height %d (%d records), but the child acknowledged %d", prev, len(recs), walAcked)
	}
	return last
}
