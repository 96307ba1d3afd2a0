package ledger

import (
	"math/big"
	"math/bits"

	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// crtCheck decides whether an RNS polynomial (coefficient domain) holds
// small integers without big-integer arithmetic: it rebuilds each
// coefficient's centered value modulo q0*q1 (128-bit), bounds it, and
// requires every further modulus to hold that same value.
type crtCheck struct {
	q0, q1, q0inv uint64 // q0^-1 mod q1
	mhi, mlo      uint64 // q0*q1
	hhi, hlo      uint64 // floor(q0*q1/2)
	halfQ01       float64
	qs, ps        []uint64
}

func newCRTCheck(p *Params) *crtCheck {
	q := p.BGV.Q()
	c := &crtCheck{q0: q[0], q1: q[1], qs: q, ps: p.BGV.P()}
	inv := new(big.Int).ModInverse(new(big.Int).SetUint64(q[0]), new(big.Int).SetUint64(q[1]))
	c.q0inv = inv.Uint64()
	c.mhi, c.mlo = bits.Mul64(q[0], q[1])
	c.hlo = c.mlo>>1 | c.mhi<<63
	c.hhi = c.mhi >> 1
	m := new(big.Int).Mul(new(big.Int).SetUint64(q[0]), new(big.Int).SetUint64(q[1]))
	c.halfQ01, _ = new(big.Float).SetInt(m.Rsh(m, 1)).Float64()
	return c
}

// centered returns |v| and its sign, for v the centered representative
// modulo q0*q1 of the residues (x0, x1).
func (c *crtCheck) centered(x0, x1 uint64) (neg bool, hi, lo uint64) {
	x0m := x0 % c.q1
	var d uint64
	if x1 >= x0m {
		d = x1 - x0m
	} else {
		d = x1 + (c.q1 - x0m)
	}
	h, l := bits.Mul64(d, c.q0inv)
	k := bits.Rem64(h, l, c.q1)
	hi, lo = bits.Mul64(c.q0, k)
	var carry uint64
	lo, carry = bits.Add64(lo, x0, 0)
	hi += carry
	if hi > c.hhi || hi == c.hhi && lo > c.hlo {
		var borrow uint64
		lo, borrow = bits.Sub64(c.mlo, lo, 0)
		hi = c.mhi - hi - borrow
		neg = true
	}
	return neg, hi, lo
}

func bound128(b float64) (hi, lo uint64) {
	if b <= 0 {
		return 0, 0
	}
	x, _ := big.NewFloat(b).Int(nil)
	lo = x.Uint64()
	hi = new(big.Int).Rsh(x, 64).Uint64()
	return hi, lo
}

func below(hi, lo, bhi, blo uint64) bool { return hi < bhi || hi == bhi && lo <= blo }

func residue(neg bool, hi, lo, q uint64) uint64 {
	r := bits.Rem64(hi, lo, q)
	if neg && r != 0 {
		r = q - r
	}
	return r
}

// small reports whether every coefficient of z (full QP level, coefficient
// domain) is an integer of absolute value at most bound.
func (c *crtCheck) small(z ringqp.Poly, bound float64) bool {
	if !c.smallQ(z.Q, bound) {
		return false
	}
	if z.P.Level() < 0 || len(c.ps) == 0 {
		return true
	}
	for k := range z.Q.Coeffs[0] {
		neg, hi, lo := c.centered(z.Q.Coeffs[0][k], z.Q.Coeffs[1][k])
		for j, q := range c.ps[:z.P.Level()+1] {
			if z.P.Coeffs[j][k] != residue(neg, hi, lo, q) {
				return false
			}
		}
	}
	return true
}

// smallQ is small for an RNS polynomial over Q (level >= 1).
func (c *crtCheck) smallQ(z ring.Poly, bound float64) bool {
	if z.Level() < 1 {
		return false
	}
	bhi, blo := bound128(bound)
	for k := range z.Coeffs[0] {
		neg, hi, lo := c.centered(z.Coeffs[0][k], z.Coeffs[1][k])
		if !below(hi, lo, bhi, blo) {
			return false
		}
		for j := 2; j <= z.Level(); j++ {
			if z.Coeffs[j][k] != residue(neg, hi, lo, c.qs[j]) {
				return false
			}
		}
	}
	return true
}
