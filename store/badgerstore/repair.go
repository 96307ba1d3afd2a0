//go:build !windows && !plan9 && !js && !wasip1 && !aix

package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// removeEmptyLogs deletes zero-length value-log (.vlog) and memtable (.mem)
// files before Badger opens dir.
//
// Badger v4.9.6 creates a new log file, then sizes it. A crash between the
// two leaves a file with no data in it that Badger then refuses to open
// ("Open existing file ... Create a new file", or "while opening fid"); the
// crash test hits it. Such a file holds nothing, so deleting it loses
// nothing. It is only done under Badger's own directory lock (an exclusive
// flock on the directory), so a file another process is creating this
// instant is never touched.
func removeEmptyLogs(dir string, log *slog.Logger) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new store
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil // in use: let badger.Open report it
	}
	defer func() { _ = unix.Flock(int(d.Fd()), unix.LOCK_UN) }()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(name, ".vlog") || strings.HasSuffix(name, ".mem")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Size() != 0 {
			continue
		}
		log.Warn("removing empty log file left by a crash", "file", name)
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove empty %s: %w", name, err)
		}
	}
	return nil
}
