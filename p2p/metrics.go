package p2p

import (
	"context"
	"errors"
	"os"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the host's own collectors. libp2p registers its collectors
// (libp2p_*) on the same Registerer.
type Metrics struct {
	// BytesSent and BytesReceived count frame bytes (header and payload) on
	// framed streams, by protocol, and gossip payloads published or delivered
	// to a subscription, under protocol "gossipsub".
	BytesSent     *prometheus.CounterVec
	BytesReceived *prometheus.CounterVec
	// StreamErrors counts framed exchanges that failed, by reason (see
	// errorReason).
	StreamErrors *prometheus.CounterVec
	// Peers is the number of peers with at least one open connection.
	Peers prometheus.Gauge
	// PeerAgents counts connected peers by the version, protocol number and
	// role of their identify agent.
	PeerAgents *prometheus.GaugeVec
	// Refused counts what was refused, by protocol and reason: frames the
	// Allow hook or a block refused (protocol = the protocol id), peers
	// refused after identify (protocol "identify"), connections of blocked
	// peers (protocol "connect").
	Refused *prometheus.CounterVec
}

// gossipLabel is the protocol label of gossip bytes.
const gossipLabel = "gossipsub"

// NewMetrics creates the collectors and registers them on reg. A collector
// already registered there (a Host restarted within one process on the same
// registry) is reused, so its counters continue.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		BytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkbank_p2p_bytes_sent_total",
			Help: "Bytes written on framed streams (by protocol) and gossip payloads published.",
		}, []string{"protocol"}),
		BytesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkbank_p2p_bytes_received_total",
			Help: "Bytes read on framed streams (by protocol) and gossip payloads delivered.",
		}, []string{"protocol"}),
		StreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkbank_p2p_stream_errors_total",
			Help: "Framed stream exchanges that failed, by reason.",
		}, []string{"reason"}),
		Peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkbank_p2p_peers",
			Help: "Peers with at least one open connection.",
		}),
		PeerAgents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zkbank_p2p_peer_agents",
			Help: "Connected peers by the version, protocol number and role of their identify agent.",
		}, []string{"version", "protocol", "role"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkbank_p2p_refused_total",
			Help: "Refused frames (by protocol id), peers refused after identify (protocol=identify) and connections of blocked peers (protocol=connect), by reason.",
		}, []string{"protocol", "reason"}),
	}
	var err error
	if m.BytesSent, err = register(reg, m.BytesSent); err != nil {
		return nil, err
	}
	if m.BytesReceived, err = register(reg, m.BytesReceived); err != nil {
		return nil, err
	}
	if m.StreamErrors, err = register(reg, m.StreamErrors); err != nil {
		return nil, err
	}
	if m.Peers, err = register(reg, m.Peers); err != nil {
		return nil, err
	}
	if m.PeerAgents, err = register(reg, m.PeerAgents); err != nil {
		return nil, err
	}
	if m.Refused, err = register(reg, m.Refused); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Reasons of zkbank_p2p_stream_errors_total.
const (
	reasonOversize  = "oversize"  // a frame over the protocol's cap
	reasonMalformed = "malformed" // bytes that are not a frame
	reasonTimeout   = "timeout"   // deadline expired
	reasonCanceled  = "canceled"  // caller's context canceled, or host closing
	reasonReset     = "reset"     // the peer reset the stream
	reasonEOF       = "eof"       // the peer closed without answering
	reasonRemote    = "remote"    // the peer's handler returned an error
	reasonHandler   = "handler"   // our handler returned an error
	reasonResource  = "resource"  // the resource manager refused memory or a stream
	reasonOpen      = "open"      // no stream could be opened (dial, protocol negotiation)
	reasonIO        = "io"        // anything else
)

// errorReason names the metric reason of an exchange's error.
func errorReason(err error) string {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return reasonOversize
	case errors.Is(err, ErrMalformedFrame):
		return reasonMalformed
	case errors.Is(err, ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return reasonTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		return reasonCanceled
	case errors.Is(err, ErrRemote):
		return reasonRemote
	case errors.Is(err, ErrResourceLimit), errors.Is(err, network.ErrResourceLimitExceeded):
		return reasonResource
	case errors.Is(err, network.ErrReset):
		return reasonReset
	case errors.Is(err, errNoResponse):
		return reasonEOF
	default:
		return reasonIO
	}
}
