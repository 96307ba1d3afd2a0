//go:build windows || plan9 || js || wasip1 || aix

package badgerstore

import "log/slog"

// removeEmptyLogs is a no-op where the directory cannot be flocked the way
// Badger does; see repair.go.
func removeEmptyLogs(string, *slog.Logger) error { return nil }
