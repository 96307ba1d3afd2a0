package p2p

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A frame is a 5-byte header, kind then a big-endian uint32 payload length,
// followed by the payload:
//
//	+------+----------------+-------------------+
//	| kind | length (4, BE) | payload (length)  |
//	+------+----------------+-------------------+
//
// A request stream carries one kindRequest frame each way (answered by
// kindResponse or kindError) and then closes; a message stream carries
// kindMessage frames from its opener only, for as long as it lives.
const (
	frameHeaderLen = 5

	kindRequest  byte = 0x01
	kindMessage  byte = 0x02
	kindResponse byte = 0x03
	kindError    byte = 0x04
)

// maxErrorBytes caps the text of a kindError frame, whatever the protocol's
// cap: an error explains, it does not carry data.
const maxErrorBytes = 1024

// firstChunk is how much of a frame is allocated before any of its payload
// has arrived; bigger frames grow as bytes actually come in, so a peer that
// claims a large frame and sends nothing costs at most this much.
const firstChunk = 1 << 20

// smallFrame is the size under which header and payload go out in one write
// (one Noise message, one yamux frame) instead of two.
const smallFrame = 64 << 10

// Errors a caller of Request or Send can act on. Stream-level failures are
// wrapped with fmt.Errorf("...: %w"), so use errors.Is.
var (
	// ErrFrameTooLarge: a payload, or a frame's claimed length, exceeds the
	// protocol's cap. The stream was reset before allocating the claim.
	ErrFrameTooLarge = errors.New("p2p: frame exceeds the protocol's cap")
	// ErrMalformedFrame: the peer sent bytes that are not a valid frame here
	// (unknown kind, a response where a request belongs, a truncated frame).
	ErrMalformedFrame = errors.New("p2p: malformed frame")
	// ErrTimeout: the protocol's timeout or the caller's deadline expired.
	ErrTimeout = errors.New("p2p: timeout")
	// ErrRemote: the peer's handler returned an error; see RemoteError.
	ErrRemote = errors.New("p2p: remote handler failed")
	// ErrResourceLimit: the resource manager refused memory for a frame.
	ErrResourceLimit = errors.New("p2p: resource limit")
	// ErrClosed: the Host is closed.
	ErrClosed = errors.New("p2p: host closed")
)

// RemoteError is the error a peer's handler returned, as text. It matches
// ErrRemote with errors.Is.
type RemoteError struct {
	Message string
}

func (e *RemoteError) Error() string        { return "p2p: remote handler failed: " + e.Message }
func (e *RemoteError) Is(target error) bool { return target == ErrRemote }

// readHeader reads a frame header. A stream that ends cleanly before the
// first header byte returns io.EOF; anywhere later, ErrMalformedFrame.
func readHeader(r io.Reader) (kind byte, n int, err error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, 0, fmt.Errorf("%w: truncated header", ErrMalformedFrame)
		}
		return 0, 0, err
	}
	kind = hdr[0]
	if kind < kindRequest || kind > kindError {
		return 0, 0, fmt.Errorf("%w: unknown kind 0x%02x", ErrMalformedFrame, kind)
	}
	// uint32 fits in int on every platform we build for (64-bit).
	return kind, int(binary.BigEndian.Uint32(hdr[1:])), nil
}

// checkLength applies the cap to a claimed payload length.
func checkLength(kind byte, n, maxBytes int) error {
	if kind == kindError {
		maxBytes = maxErrorBytes
	}
	if n > maxBytes {
		return fmt.Errorf("%w: frame claims %d bytes, cap is %d", ErrFrameTooLarge, n, maxBytes)
	}
	return nil
}

// readBody reads an n-byte payload whose length already passed checkLength.
// Memory grows with the bytes received, never ahead of them by more than
// firstChunk or the size already received.
func readBody(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, firstChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		m, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: payload ended after %d of %d bytes", ErrMalformedFrame, len(buf), n)
			}
			return nil, err
		}
	}
	return buf, nil
}

// writeFrame writes one frame; the caller has checked len(payload) against
// the cap.
func writeFrame(w io.Writer, kind byte, payload []byte) error {
	if len(payload) <= smallFrame {
		buf := make([]byte, frameHeaderLen+len(payload))
		putHeader(buf, kind, len(payload))
		copy(buf[frameHeaderLen:], payload)
		_, err := w.Write(buf)
		return err
	}
	var hdr [frameHeaderLen]byte
	putHeader(hdr[:], kind, len(payload))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func putHeader(b []byte, kind byte, n int) {
	b[0] = kind
	binary.BigEndian.PutUint32(b[1:frameHeaderLen], uint32(n))
}

// errorText turns a handler error into the payload of a kindError frame.
func errorText(err error) []byte {
	msg := err.Error()
	if len(msg) > maxErrorBytes {
		msg = msg[:maxErrorBytes]
	}
	return []byte(strings.ToValidUTF8(msg, "?"))
}
