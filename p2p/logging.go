package p2p

import (
	"context"
	"log/slog"
	"slices"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"go.uber.org/zap/zapcore"
)

// RouteLibp2pLogs sends the logs of libp2p itself to handler, keeping records
// at minLevel and above. Both of libp2p's loggers are process-wide: go-libp2p
// logs through gologshim (slog), gossipsub and the DHT through go-log v2
// (zap). Call it once, early in main, before New: a gologshim logger picks its
// handler on its first record and keeps it.
//
// Without it, both loggers write to stderr at level error (their default),
// unless GOLOG_LOG_LEVEL says otherwise; New never changes process-wide
// logging, because tests and testnets run several hosts in one process.
//
// The node=<id> attribute belongs to the caller's handler: with one host per
// process, pass the same handler the node's logger uses.
func RouteLibp2pLogs(handler slog.Handler, minLevel slog.Level) {
	h := &minLevelHandler{next: handler, min: minLevel}
	gologshim.SetDefaultHandler(h)
	golog.SetPrimaryCore(&slogCore{h: h})
	// go-log filters by level before reaching its core; open it to minLevel
	// so the handler's filter is the one that decides.
	_ = golog.SetLogLevel("*", zapLevelName(minLevel))
}

// minLevelHandler drops records below min.
type minLevelHandler struct {
	next slog.Handler
	min  slog.Level
}

func (h *minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.next.Enabled(ctx, l)
}

func (h *minLevelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.next.Handle(ctx, r)
}

func (h *minLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &minLevelHandler{next: h.next.WithAttrs(attrs), min: h.min}
}

func (h *minLevelHandler) WithGroup(name string) slog.Handler {
	return &minLevelHandler{next: h.next.WithGroup(name), min: h.min}
}

// slogCore is a zapcore.Core that hands go-log's records to a slog.Handler.
type slogCore struct {
	h slog.Handler
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h.WithAttrs(zapAttrs(fields))}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	// "logger" is the key gologshim uses for the subsystem, so both halves of
	// libp2p's logs look alike.
	r.AddAttrs(slog.String("logger", e.LoggerName))
	r.AddAttrs(zapAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func zapAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func zapLevelName(l slog.Level) string {
	switch {
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warn"
	default:
		return "error"
	}
}
