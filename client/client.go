package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// DefaultTimeout bounds one HTTP exchange. Ciphertext bodies are around a
// MiB, and opening an account waits for a commit.
const DefaultTimeout = 30 * time.Second

// maxBody caps what the client reads from a node: a balance reply is under
// 2 MiB, a collective key about 2 MiB; anything far larger is a broken node.
const maxBody = 64 << 20

// Client talks to one node's API.
type Client struct {
	base string
	hc   *http.Client
}

// Option configures a Client (and every Client of a Multi).
type Option func(*options)

type options struct {
	timeout time.Duration
	hc      *http.Client
	params  *ledger.Params
}

// WithTimeout bounds each HTTP exchange (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithHTTPClient replaces the HTTP client (its Timeout is then the caller's).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithParams gives a Multi an already instantiated parameter set (they cost
// tens of milliseconds to build); it must be the genesis's set.
func WithParams(p *ledger.Params) Option { return func(o *options) { o.params = p } }

func buildOptions(opts []Option) options {
	o := options{timeout: DefaultTimeout}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// New returns a client of the node whose API base URL is baseURL
// ("http://127.0.0.1:27100"; a missing scheme means http).
func New(baseURL string, opts ...Option) *Client {
	o := buildOptions(opts)
	hc := o.hc
	if hc == nil {
		hc = &http.Client{Timeout: o.timeout}
	}
	return &Client{base: normalize(baseURL), hc: hc}
}

func normalize(u string) string {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u
}

// URL is the node's API base URL.
func (c *Client) URL() string { return c.base }

// Status is the node's view of the chain.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var s api.Status
	return &s, c.getJSON(ctx, api.PathStatus, &s)
}

// Genesis fetches and validates the chain's genesis from the node.
func (c *Client) Genesis(ctx context.Context) (*genesis.Genesis, error) {
	var g genesis.Genesis
	if err := c.getJSON(ctx, api.PathGenesis, &g); err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("node %s served a bad genesis: %w", hostOf(c.base), err)
	}
	return &g, nil
}

// CollectiveKey returns the encoded collective public key (decode with
// Params.DecodeCollectiveKey). 503 until the key ceremony is done.
func (c *Client) CollectiveKey(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, api.PathPublicKey, "", nil, "")
}

// Account returns an account's plaintext registry entry.
func (c *Client) Account(ctx context.Context, id string) (*api.Account, error) {
	var a api.Account
	return &a, c.accountErr(id, c.getJSON(ctx, api.PathAccount+url.PathEscape(id), &a))
}

// openWait covers the node's wait for an opening to commit (60 s).
const openWait = 90 * time.Second

// Open opens an account; the node answers once the opening is committed, so
// this call may take up to a minute whatever the client's timeout.
func (c *Client) Open(ctx context.Context, req api.OpenRequest) (*api.OpenResponse, error) {
	body, _ := json.Marshal(req)
	long := *c
	if c.hc.Timeout != 0 && c.hc.Timeout < openWait {
		hc := *c.hc
		hc.Timeout = openWait
		long.hc = &hc
	}
	b, err := long.do(ctx, http.MethodPost, api.PathOpen, api.ContentJSON, body, "")
	if err != nil {
		return nil, err
	}
	var r api.OpenResponse
	return &r, c.decode(api.PathOpen, b, &r)
}

// Submit uploads a submission. The ids are one per envelope, in order.
func (c *Client) Submit(ctx context.Context, sub *ledger.Submission) (*api.SubmitResponse, error) {
	body, err := sub.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b, err := c.do(ctx, http.MethodPost, api.PathTransfers, api.ContentBinary, body, "")
	if err != nil {
		return nil, err
	}
	var r api.SubmitResponse
	if err := c.decode(api.PathTransfers, b, &r); err != nil {
		return nil, err
	}
	if len(r.IDs) != len(sub.Envelopes) {
		return nil, fmt.Errorf("node %s acknowledged %d transfers, sent %d", hostOf(c.base), len(r.IDs), len(sub.Envelopes))
	}
	return &r, nil
}

// Transfer returns a transfer's fate. A node that never saw the id answers
// 404 (ErrNotFound) or status "unknown".
func (c *Client) Transfer(ctx context.Context, id string) (*api.TransferStatus, error) {
	var s api.TransferStatus
	return &s, c.getJSON(ctx, api.PathTransfer+url.PathEscape(id), &s)
}

// Block returns a committed block's summary.
func (c *Client) Block(ctx context.Context, height uint64) (*api.Block, error) {
	var b api.Block
	return &b, c.getJSON(ctx, api.PathBlock+strconv.FormatUint(height, 10), &b)
}

// History lists the account's transfers known to the node, newest first.
func (c *Client) History(ctx context.Context, account string) (*api.History, error) {
	var h api.History
	return &h, c.accountErr(account, c.getJSON(ctx, api.PathHistory+url.PathEscape(account), &h))
}

// BalanceShare asks the node for its binary ledger.BalanceReply.
func (c *Client) BalanceShare(ctx context.Context, req api.BalanceRequest) ([]byte, error) {
	body, _ := json.Marshal(req)
	b, err := c.do(ctx, http.MethodPost, api.PathBalance, api.ContentJSON, body, api.ContentBinary)
	return b, c.accountErr(req.Account, err)
}

func (c *Client) accountErr(id string, err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return &UnknownAccountError{Account: id, URL: c.base}
	}
	return err
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	b, err := c.do(ctx, http.MethodGet, path, "", nil, api.ContentJSON)
	if err != nil {
		return err
	}
	return c.decode(path, b, out)
}

func (c *Client) decode(path string, b []byte, out any) error {
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("node %s: bad JSON from %s: %w", hostOf(c.base), path, err)
	}
	return nil
}

// do performs one exchange. A transport failure is *UnreachableError unless
// the caller's context ended; a non-2xx answer is *APIError.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte, accept string) ([]byte, error) {
	u := c.base + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("node URL %q: %w", c.base, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("node %s: %w", hostOf(c.base), ctx.Err())
		}
		return nil, &UnreachableError{URL: c.base, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("node %s: %w", hostOf(c.base), ctx.Err())
		}
		return nil, &UnreachableError{URL: c.base, Err: err}
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("node %s: response to %s exceeds %d bytes", hostOf(c.base), path, maxBody)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{URL: u, Status: resp.StatusCode}
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			ae.Message, ae.Code = e.Error, e.Code
		} else {
			ae.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return nil, ae
	}
	return b, nil
}
