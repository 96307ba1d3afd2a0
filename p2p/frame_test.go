package p2p

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, smallFrame, smallFrame + 1, 3*firstChunk + 7} {
		payload := bytes.Repeat([]byte{0xAB}, size)
		var buf bytes.Buffer
		if err := writeFrame(&buf, kindMessage, payload); err != nil {
			t.Fatal(err)
		}
		kind, n, err := readHeader(&buf)
		if err != nil || kind != kindMessage || n != size {
			t.Fatalf("size %d: header = %d, %d, %v", size, kind, n, err)
		}
		if err := checkLength(kind, n, size); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got, err := readBody(&buf, n)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("size %d: body mismatch (%d bytes), err %v", size, len(got), err)
		}
	}
}

func TestFrameClaimOverCapIsRejected(t *testing.T) {
	var hdr [frameHeaderLen]byte
	putHeader(hdr[:], kindRequest, 1<<31)
	kind, n, err := readHeader(bytes.NewReader(hdr[:]))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkLength(kind, n, 1<<20); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("claim of 2 GiB against a 1 MiB cap: %v, want ErrFrameTooLarge", err)
	}
	// An error frame is capped at maxErrorBytes whatever the protocol allows.
	if err := checkLength(kindError, maxErrorBytes+1, 1<<20); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("long error frame: %v", err)
	}
}

// A peer that claims a large frame within the cap and then sends almost
// nothing must not make us allocate the claim.
func TestFrameTruncatedClaimAllocatesOnlyWhatArrives(t *testing.T) {
	const claim = 100 << 20
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	_, err := readBody(strings.NewReader("only a few bytes"), claim)
	runtime.ReadMemStats(&ms1)
	if !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("truncated body: %v, want ErrMalformedFrame", err)
	}
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 2*firstChunk {
		t.Fatalf("allocated %d bytes for a %d-byte claim that sent 16 bytes", alloc, claim)
	}
}

func TestFrameGarbage(t *testing.T) {
	cases := map[string]struct {
		in   []byte
		want error
	}{
		"unknown kind":     {[]byte{0xFF, 0, 0, 0, 1, 'x'}, ErrMalformedFrame},
		"zero kind":        {[]byte{0, 0, 0, 0, 0}, ErrMalformedFrame},
		"truncated header": {[]byte{kindRequest, 0}, ErrMalformedFrame},
		"clean end":        {nil, io.EOF},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := readHeader(bytes.NewReader(c.in)); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestErrorTextIsCappedAndValidUTF8(t *testing.T) {
	long := strings.Repeat("é", maxErrorBytes) // 2 bytes each
	got := errorText(errors.New(long))
	if len(got) > maxErrorBytes {
		t.Fatalf("error text %d bytes, cap %d", len(got), maxErrorBytes)
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(string(got), "?")) {
		t.Fatalf("error text is not a prefix of the message")
	}
}
