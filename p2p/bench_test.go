package p2p

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// benchPair is two hosts on 127.0.0.1 over TCP with Noise and yamux, the
// server answering protoEcho with handler.
func benchPair(b *testing.B, handler Handler) (server, client *Host) {
	b.Helper()
	server, _ = newHost(b, Config{})
	if err := server.SetHandler(protoEcho, handler); err != nil {
		b.Fatal(err)
	}
	client, _ = newHost(b, Config{Bootstrap: server.Addrs()})
	waitFor(b, 10*time.Second, func() bool { return connected(client, server.ID()) }, "client to reach server")
	return server, client
}

// BenchmarkRequest1MiB: one 1 MiB request frame per new stream, answered by
// an empty response; the figure includes opening the stream and the round
// trip.
func BenchmarkRequest1MiB(b *testing.B) {
	server, client := benchPair(b, func(context.Context, peer.ID, []byte) ([]byte, error) { return nil, nil })
	payload := make([]byte, 1<<20)
	ctx := context.Background()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Request(ctx, server.ID(), protoEcho, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSend1MiB: 1 MiB one-way messages on the long-lived ordered
// stream, timed until the handler has seen the last one.
func BenchmarkSend1MiB(b *testing.B) {
	var received atomic.Int64
	server, client := benchPair(b, func(context.Context, peer.ID, []byte) ([]byte, error) {
		received.Add(1)
		return nil, nil
	})
	payload := make([]byte, 1<<20)
	ctx := context.Background()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	var sent int64
	for b.Loop() {
		if err := client.Send(ctx, server.ID(), protoEcho, payload); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	// b.Loop stopped the timer; restart it for the tail still in flight.
	b.StartTimer()
	for received.Load() < sent {
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkRawStream1MiB is the baseline without our framing: 1 MiB writes on
// one libp2p stream (Noise, yamux, TCP) drained by io.Copy on the other end.
func BenchmarkRawStream1MiB(b *testing.B) {
	const raw = "/zkbank/bench-raw/1"
	server, _ := newHost(b, Config{})
	done := make(chan struct{})
	server.host.SetStreamHandler(raw, func(s network.Stream) {
		io.Copy(io.Discard, s)
		s.Close()
		close(done)
	})
	client, _ := newHost(b, Config{Bootstrap: server.Addrs()})
	waitFor(b, 10*time.Second, func() bool { return connected(client, server.ID()) }, "client to reach server")
	s, err := client.host.NewStream(context.Background(), server.ID(), raw)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StartTimer()
	s.CloseWrite()
	<-done
}
