package person

import (
	"errors"
	"strconv"
	"strings"
)

// Money is an exact amount in cents. Values travel as JSON numbers with at most
// two decimals and are never converted to floating point.
type Money int64

// MaxMoney is the largest accepted amount, 1e12.
const MaxMoney Money = 1_000_000_000_000_00

var errMoney = errors.New("must be a number greater than 0 and at most 1e12, with at most 2 decimals")

// maxExponent bounds the exponent of an accepted number's text. Any amount
// within range written with a larger exponent would need more digits than a
// request body can hold, so nothing valid is lost.
const maxExponent = 10_000_000

// ParseMoney parses the literal text of a JSON number such as 1000, 1000.5,
// 0.01 or 1.5e3 into exact cents, without ever going through floating point.
// It accepts values greater than 0 and at most 1e12 with at most two decimals
// once trailing zeros are dropped (1000.500 and 12345e-2 are fine, 0.001 is
// not); anything else, including signs, is an error.
func ParseMoney(text string) (Money, error) {
	mant, exp := text, 0
	if i := strings.IndexAny(text, "eE"); i >= 0 {
		e, err := strconv.Atoi(text[i+1:])
		if err != nil || e > maxExponent || e < -maxExponent {
			return 0, errMoney
		}
		mant, exp = text[:i], e
	}
	whole, frac, dot := strings.Cut(mant, ".")
	if whole == "" || (dot && frac == "") || !isDigits(whole) || !isDigits(frac) {
		return 0, errMoney
	}
	// value = digits × 10^shift, with digits free of leading and trailing zeros.
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, errMoney // zero
	}
	shift := exp - len(frac)
	trimmed := strings.TrimRight(digits, "0")
	shift += len(digits) - len(trimmed)
	digits = trimmed
	// In cents: digits × 10^(shift+2), an integer only if shift >= -2.
	if shift < -2 || len(digits)+shift+2 > len("100000000000000") {
		return 0, errMoney
	}
	n, err := strconv.ParseInt(digits+strings.Repeat("0", shift+2), 10, 64)
	if err != nil || Money(n) > MaxMoney {
		return 0, errMoney
	}
	return Money(n), nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String renders the amount as a decimal without trailing zeros: 1000, 1000.5,
// 0.01. It is the exact inverse of ParseMoney for every valid amount.
func (m Money) String() string {
	sign, u := "", uint64(m)
	if m < 0 {
		sign, u = "-", -uint64(m)
	}
	s := sign + strconv.FormatUint(u/100, 10)
	if c := u % 100; c != 0 {
		s += "." + strings.TrimRight(strconv.FormatUint(100+c, 10)[1:], "0")
	}
	return s
}

// MarshalJSON writes the amount as an exact JSON number.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalJSON reads an exact JSON number.
func (m *Money) UnmarshalJSON(b []byte) error {
	v, err := ParseMoney(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
