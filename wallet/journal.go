package wallet

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"time"
)

// Entry is one outgoing transfer the wallet made. Amounts never leave the
// owner's machine in the clear, so the sender's journal is the only place a
// past amount can be read back from.
type Entry struct {
	ID     string    `json:"id"`
	To     string    `json:"to"`
	Amount uint64    `json:"amount"` // cents
	Time   time.Time `json:"time"`
}

// JournalPath is the sidecar file next to a wallet file.
func JournalPath(walletPath string) string { return walletPath + ".journal" }

// Record appends an entry to the wallet's journal (mode 0600).
func (w *Wallet) Record(e Entry) error {
	if w.path == "" {
		return nil
	}
	p := JournalPath(w.path)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return &FileError{Path: p, Err: err}
	}
	b, _ := json.Marshal(e)
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &FileError{Path: p, Err: err}
	}
	return nil
}

// Journal reads the wallet's journal, keyed by transfer id. A missing
// journal is empty; unreadable lines are skipped (it is a convenience, not a
// ledger).
func (w *Wallet) Journal() (map[string]Entry, error) {
	out := map[string]Entry{}
	if w.path == "" {
		return out, nil
	}
	p := JournalPath(w.path)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, &FileError{Path: p, Err: err}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.ID != "" {
			out[e.ID] = e
		}
	}
	return out, sc.Err()
}
