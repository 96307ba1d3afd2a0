package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Handler answers a request, or consumes a one-way message (its response is
// then discarded, and an error is only logged and counted). ctx is canceled
// at the protocol's timeout or when the host closes. The payload is the
// handler's to keep.
type Handler func(ctx context.Context, from peer.ID, payload []byte) ([]byte, error)

// errNoResponse: the peer closed a request stream without answering.
var errNoResponse = errors.New("p2p: stream closed without a response")

// SetHandler serves proto (which must start with /zkbank/) with h, for both
// Request and Send. Requests are served concurrently, one stream each;
// messages from one peer on one protocol are handled one at a time, in the
// order they were sent.
func (h *Host) SetHandler(proto protocol.ID, handler Handler) error {
	if err := checkProtocol(proto); err != nil {
		return err
	}
	h.host.SetStreamHandler(proto, func(s network.Stream) { h.serve(proto, handler, s) })
	return nil
}

// RemoveHandler stops serving proto; streams already open finish.
func (h *Host) RemoveHandler(proto protocol.ID) {
	h.host.RemoveStreamHandler(proto)
}

// serve reads the first frame of an inbound stream and either answers a
// request or enters the message loop.
func (h *Host) serve(proto protocol.ID, handler Handler, s network.Stream) {
	if !h.enter() {
		s.Reset()
		return
	}
	defer h.inflight.Done()
	lim := h.cfg.limitsFor(proto)
	from := s.Conn().RemotePeer()

	if err := h.admit(from, proto); err != nil {
		h.refuse(s, proto, from, err)
		return
	}
	deadline := time.Now().Add(lim.Timeout)
	s.SetDeadline(deadline)
	reqLim := lim // what this side reads; lim still bounds the response
	if lim.MaxRequestBytes > 0 {
		reqLim.MaxFrameBytes = min(lim.MaxFrameBytes, lim.MaxRequestBytes)
	}
	kind, payload, release, err := h.readFrame(s, proto, reqLim)
	if err == nil && kind != kindRequest && kind != kindMessage {
		release()
		err = fmt.Errorf("%w: kind 0x%02x opens no stream", ErrMalformedFrame, kind)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: stream closed before its first frame", ErrMalformedFrame)
		}
		h.streamFailed(s, proto, from, "serve", err)
		return
	}
	if kind == kindMessage {
		if h.cfg.Trusted != nil && !h.cfg.Trusted(from) {
			// A message stream stays open between messages: only trusted
			// peers (validators) may hold one.
			release()
			h.refuse(s, proto, from, &Refusal{Reason: ReasonMessageStream})
			return
		}
		h.serveMessages(proto, handler, s, reqLim, payload, release)
		return
	}
	ctx, cancel := context.WithDeadline(h.ctx, deadline)
	resp, herr := h.call(ctx, handler, from, payload)
	if herr != nil && ctx.Err() != nil {
		// Out of time (the requester runs the same timeout and has given up)
		// or closing: an answer would come too late to matter.
		cancel()
		release()
		h.streamFailed(s, proto, from, "handle", ctxErr(ctx, herr))
		return
	}
	cancel()
	release()

	respKind := kindResponse
	switch {
	case herr != nil:
		h.metrics.StreamErrors.WithLabelValues(reasonHandler).Inc()
		h.log.Debug("handler failed", "protocol", proto, "peer", from, "err", herr)
		respKind, resp = kindError, errorText(herr)
	case len(resp) > lim.MaxFrameBytes:
		h.metrics.StreamErrors.WithLabelValues(reasonOversize).Inc()
		h.log.Warn("handler response over the protocol's cap", "protocol", proto, "bytes", len(resp), "cap", lim.MaxFrameBytes)
		respKind, resp = kindError, errorText(fmt.Errorf("response of %d bytes over the cap of %d", len(resp), lim.MaxFrameBytes))
	}
	// The answer is held until the requester has read it (up to the
	// timeout): it counts against the stream's, peer's, protocol's and
	// system's memory like an incoming frame, so strangers asking for big
	// answers and never reading them cannot hold unbounded memory.
	releaseResp, err := reserveFrame(s, len(resp))
	if err != nil {
		h.streamFailed(s, proto, from, "respond", err)
		return
	}
	defer releaseResp()
	if err := writeFrame(s, respKind, resp); err != nil {
		h.streamFailed(s, proto, from, "respond", timeoutErr(err))
		return
	}
	h.metrics.BytesSent.WithLabelValues(string(proto)).Add(float64(frameHeaderLen + len(resp)))
	s.Close()
}

// serveMessages handles the first message of a message stream and every
// later one, in order, until the peer closes or resets it. Between messages
// there is no deadline: the stream lives as long as the connection.
func (h *Host) serveMessages(proto protocol.ID, handler Handler, s network.Stream, lim ProtocolLimits, payload []byte, release func()) {
	from := s.Conn().RemotePeer()
	for {
		ctx, cancel := context.WithTimeout(h.ctx, lim.Timeout)
		_, herr := h.call(ctx, handler, from, payload)
		cancel()
		release()
		if herr != nil {
			h.metrics.StreamErrors.WithLabelValues(reasonHandler).Inc()
			h.log.Debug("message handler failed", "protocol", proto, "peer", from, "err", herr)
		}

		s.SetReadDeadline(time.Time{})
		var kind byte
		var err error
		kind, payload, release, err = h.readFrameBodyDeadline(s, proto, lim, from)
		if errors.Is(err, io.EOF) {
			s.Close()
			return
		}
		if errors.Is(err, ErrRefused) {
			h.refuse(s, proto, from, err)
			return
		}
		if err == nil && kind != kindMessage {
			release()
			err = fmt.Errorf("%w: kind 0x%02x on a message stream", ErrMalformedFrame, kind)
		}
		if err != nil {
			h.streamFailed(s, proto, from, "serve message", err)
			return
		}
	}
}

// call runs the handler, turning a panic into an error so one bad message
// cannot take the node down.
func (h *Host) call(ctx context.Context, handler Handler, from peer.ID, payload []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("handler panicked", "peer", from, "panic", r)
			resp, err = nil, fmt.Errorf("internal error")
		}
	}()
	return handler(ctx, from, payload)
}

// readFrame reads one frame under the deadline already set on s: header,
// cap check, memory reservation, body. release returns the reservation.
func (h *Host) readFrame(s network.Stream, proto protocol.ID, lim ProtocolLimits) (kind byte, payload []byte, release func(), err error) {
	kind, n, err := readHeader(s)
	if err != nil {
		return 0, nil, nil, timeoutErr(err)
	}
	return h.readBody(s, proto, lim, kind, n)
}

// readFrameBodyDeadline waits for a header without a deadline, asks whether
// from may send it (an error matching ErrRefused if not), then reads the body
// within the protocol's timeout.
func (h *Host) readFrameBodyDeadline(s network.Stream, proto protocol.ID, lim ProtocolLimits, from peer.ID) (kind byte, payload []byte, release func(), err error) {
	kind, n, err := readHeader(s)
	if err != nil {
		return 0, nil, nil, timeoutErr(err)
	}
	if err := h.admit(from, proto); err != nil {
		return 0, nil, nil, err
	}
	s.SetReadDeadline(time.Now().Add(lim.Timeout))
	return h.readBody(s, proto, lim, kind, n)
}

func (h *Host) readBody(s network.Stream, proto protocol.ID, lim ProtocolLimits, kind byte, n int) (byte, []byte, func(), error) {
	if err := checkLength(kind, n, lim.MaxFrameBytes); err != nil {
		return 0, nil, nil, err
	}
	release, err := reserveFrame(s, n)
	if err != nil {
		return 0, nil, nil, err
	}
	payload, err := readBody(s, n)
	if err != nil {
		release()
		return 0, nil, nil, timeoutErr(err)
	}
	h.metrics.BytesReceived.WithLabelValues(string(proto)).Add(float64(frameHeaderLen + n))
	return kind, payload, release, nil
}

// streamFailed resets s, counts the reason and logs at debug level: a peer's
// bad stream is routine, the metric is what an operator watches.
func (h *Host) streamFailed(s network.Stream, proto protocol.ID, from peer.ID, op string, err error) {
	s.Reset()
	reason := errorReason(err)
	if h.isClosed() {
		reason = reasonCanceled
	}
	h.metrics.StreamErrors.WithLabelValues(reason).Inc()
	h.log.Debug("stream reset", "op", op, "protocol", proto, "peer", from, "reason", reason, "err", err)
}

// Request sends payload to p on proto over a new stream and returns the
// handler's response. A handler error comes back as a *RemoteError
// (errors.Is(err, ErrRemote)); the protocol's timeout and ctx both bound the
// whole exchange (ErrTimeout).
func (h *Host) Request(ctx context.Context, p peer.ID, proto protocol.ID, payload []byte) ([]byte, error) {
	if err := checkProtocol(proto); err != nil {
		return nil, err
	}
	lim := h.cfg.limitsFor(proto)
	if len(payload) > lim.MaxFrameBytes {
		return nil, fmt.Errorf("p2p: request %s to %s: %d bytes: %w", proto, p, len(payload), ErrFrameTooLarge)
	}
	if err := h.checkOpen(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()

	s, err := h.host.NewStream(ctx, p, proto)
	if err != nil {
		err = ctxErr(ctx, err)
		h.metrics.StreamErrors.WithLabelValues(openReason(err)).Inc()
		return nil, fmt.Errorf("p2p: request %s to %s: open stream: %w", proto, p, err)
	}
	// Deadlines bound blocked reads and writes; AfterFunc also unblocks them
	// when the caller cancels.
	deadline, _ := ctx.Deadline()
	s.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()

	resp, err := h.roundTrip(s, proto, lim, payload)
	if err != nil {
		err = ctxErr(ctx, err)
		h.streamFailed(s, proto, p, "request", err)
		return nil, fmt.Errorf("p2p: request %s to %s: %w", proto, p, err)
	}
	s.Close()
	return resp, nil
}

func (h *Host) roundTrip(s network.Stream, proto protocol.ID, lim ProtocolLimits, payload []byte) ([]byte, error) {
	if err := writeFrame(s, kindRequest, payload); err != nil {
		return nil, timeoutErr(err)
	}
	h.metrics.BytesSent.WithLabelValues(string(proto)).Add(float64(frameHeaderLen + len(payload)))
	if err := s.CloseWrite(); err != nil {
		return nil, err
	}
	kind, resp, release, err := h.readFrame(s, proto, lim)
	if errors.Is(err, io.EOF) {
		return nil, errNoResponse
	}
	if err != nil {
		return nil, err
	}
	// The caller owns the response from here; the reservation covered the
	// read only.
	release()
	switch kind {
	case kindResponse:
		return resp, nil
	case kindError:
		return nil, &RemoteError{Message: string(resp)}
	default:
		return nil, fmt.Errorf("%w: kind 0x%02x is not a response", ErrMalformedFrame, kind)
	}
}

// outKey names the ordered message stream to one peer on one protocol.
type outKey struct {
	peer  peer.ID
	proto protocol.ID
}

// outStream is an ordered message stream. lock is a one-slot semaphore
// rather than a mutex so a Send waiting behind another honours its ctx.
type outStream struct {
	lock chan struct{}
	s    network.Stream // guarded by lock
}

// Send writes payload to p on proto as a one-way message and returns once it
// is handed to the connection: there is no acknowledgement, and a message in
// flight when the connection drops is lost (use Request when the answer
// matters). Messages to one peer on one protocol travel in order on one
// long-lived stream, opened on first use and reopened after it breaks;
// concurrent Sends to the same peer and protocol are serialized.
func (h *Host) Send(ctx context.Context, p peer.ID, proto protocol.ID, payload []byte) error {
	if err := checkProtocol(proto); err != nil {
		return err
	}
	lim := h.cfg.limitsFor(proto)
	if len(payload) > lim.MaxFrameBytes {
		return fmt.Errorf("p2p: send %s to %s: %d bytes: %w", proto, p, len(payload), ErrFrameTooLarge)
	}
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	o, err := h.outStreamFor(p, proto)
	if err != nil {
		return err
	}
	select {
	case o.lock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("p2p: send %s to %s: %w", proto, p, ctxErr(ctx, ctx.Err()))
	}
	defer func() { <-o.lock }()

	if o.s != nil && o.s.Conn().IsClosed() {
		o.s.Reset()
		o.s = nil
	}
	if o.s == nil {
		s, err := h.host.NewStream(ctx, p, proto)
		if err != nil {
			err = ctxErr(ctx, err)
			h.metrics.StreamErrors.WithLabelValues(openReason(err)).Inc()
			return fmt.Errorf("p2p: send %s to %s: open stream: %w", proto, p, err)
		}
		o.s = s
	}
	s := o.s
	deadline, _ := ctx.Deadline()
	s.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	err = writeFrame(s, kindMessage, payload)
	if !stop() && err == nil {
		// ctx ended as the write finished and the stream was reset: the
		// message may not have left.
		err = ctx.Err()
	}
	if err != nil {
		err = ctxErr(ctx, timeoutErr(err))
		h.streamFailed(s, proto, p, "send", err)
		o.s = nil
		return fmt.Errorf("p2p: send %s to %s: %w", proto, p, err)
	}
	s.SetWriteDeadline(time.Time{})
	h.metrics.BytesSent.WithLabelValues(string(proto)).Add(float64(frameHeaderLen + len(payload)))
	return nil
}

func (h *Host) outStreamFor(p peer.ID, proto protocol.ID) (*outStream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	k := outKey{p, proto}
	o, ok := h.out[k]
	if !ok {
		o = &outStream{lock: make(chan struct{}, 1)}
		h.out[k] = o
	}
	return o, nil
}

// dropOutStreams forgets the message streams to a peer that disconnected;
// their connection is gone, and a Send holding one finds it closed. Called
// with h.mu held.
func (h *Host) dropOutStreams(p peer.ID) {
	for k := range h.out {
		if k.peer == p {
			delete(h.out, k)
		}
	}
}

// timeoutErr marks a deadline expiry on the stream as ErrTimeout. yamux
// reports its own timeout error, not os.ErrDeadlineExceeded.
func timeoutErr(err error) error {
	if err == nil || errors.Is(err, ErrTimeout) {
		return err
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// ctxErr explains an I/O error by the context when the context ended first:
// a reset caused by our own AfterFunc is a timeout or a cancellation, not a
// peer's reset.
func ctxErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrTimeout):
		return err
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || pastDeadline(ctx):
		// The clock, not only ctx.Err(): on a loaded machine the context's
		// timer can fire after the peer's reaction to the same deadline.
		return fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return timeoutErr(err)
}

func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// openReason names the metric reason of a failed NewStream.
func openReason(err error) string {
	switch r := errorReason(err); r {
	case reasonTimeout, reasonCanceled, reasonResource:
		return r
	}
	return reasonOpen
}
