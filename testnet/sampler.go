package testnet

import (
	"fmt"
	"math/rand/v2"
)

// Sampler draws indices in [0, n).
type Sampler interface {
	Index() int
}

type uniform struct {
	r *rand.Rand
	n int
}

func (u uniform) Index() int { return u.r.IntN(u.n) }

// zipf draws rank k with probability proportional to 1/(k+1)^s; perm maps
// ranks to indices so the popular items are not always the first wallets.
type zipf struct {
	z    *rand.Zipf
	perm []int
}

func (z zipf) Index() int { return z.perm[z.z.Uint64()] }

// NewSampler returns a uniform sampler over n items when s == 0, else a Zipf
// sampler with exponent s (> 1: math/rand's Zipf needs it). The ranking of
// items is a seeded permutation.
func NewSampler(r *rand.Rand, n int, s float64) (Sampler, error) {
	if n < 1 {
		return nil, fmt.Errorf("sampler over %d items", n)
	}
	if s == 0 {
		return uniform{r: r, n: n}, nil
	}
	if s <= 1 {
		return nil, fmt.Errorf("--zipf %.2f: the exponent must be > 1 (or 0 for uniform)", s)
	}
	return zipf{z: rand.NewZipf(r, s, 1, uint64(n-1)), perm: r.Perm(n)}, nil
}

// amountSampler draws a transfer amount from a balance: uniform in
// [1, balance/maxFraction], or Zipf-skewed toward small amounts with rare
// large ones when s > 1.
type amountSampler struct {
	r *rand.Rand
	s float64
}

// maxFraction bounds one transfer to 1/maxFraction of the sender's balance,
// so wallets keep funds for many transfers.
const maxFraction = 20

func (a amountSampler) draw(balance uint64) uint64 {
	top := balance / maxFraction
	if top < 1 {
		top = min(balance, 1)
	}
	if top == 0 {
		return 0
	}
	if a.s == 0 || top == 1 {
		return 1 + a.r.Uint64N(top)
	}
	return 1 + rand.NewZipf(a.r, a.s, 1, top-1).Uint64()
}
