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

// ParseMoney parses the literal text of a JSON number such as 1000, 1000.5 or 1e3.
func ParseMoney(text string) (Money, error) {
	mant, exp := text, 0
	if i := strings.IndexAny(text, "eE"); i >= 0 {
		e, err := strconv.Atoi(text[i+1:])
		if err != nil || e > 20 || e < -20 {
			return 0, errMoney
		}
		mant, exp = text[:i], e
	}
	if strings.HasPrefix(mant, "-") || strings.HasPrefix(mant, "+") {
		return 0, errMoney
	}
	whole, frac, _ := strings.Cut(mant, ".")
	if whole == "" || strings.Trim(whole+frac, "0123456789") != "" {
		return 0, errMoney
	}
	digits := strings.TrimLeft(whole+frac, "0")
	scale := len(frac) - exp // value = digits * 10^-scale
	// Drop trailing zeros so 1000.500 and 1.5e2 are as exact as they look.
	for scale > 2 && strings.HasSuffix(digits, "0") {
		digits, scale = digits[:len(digits)-1], scale-1
	}
	if scale > 2 {
		return 0, errMoney
	}
	if digits == "" {
		return 0, errMoney
	}
	if len(digits)+(2-scale) > 16 {
		return 0, errMoney
	}
	n, err := strconv.ParseInt(digits+strings.Repeat("0", 2-scale), 10, 64)
	if err != nil || n <= 0 || Money(n) > MaxMoney {
		return 0, errMoney
	}
	return Money(n), nil
}

// String renders the amount as a decimal without trailing zeros: 1000, 1000.5.
func (m Money) String() string {
	s := strconv.FormatInt(int64(m)/100, 10)
	if c := int64(m) % 100; c != 0 {
		s += "." + strings.TrimRight(strconv.FormatInt(100+c, 10)[1:], "0")
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
