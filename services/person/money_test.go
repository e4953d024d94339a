package person

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseMoney(t *testing.T) {
	ok := []struct {
		text string
		want Money // cents
	}{
		{"1000", 100000},
		{"100000", 10000000},
		{"1", 100},
		{"0.1", 10},
		{"0.2", 20},
		{"0.3", 30},
		{"0.01", 1},
		{"0.10", 10},
		{"1.1", 110},
		{"1.10", 110},
		{"1.500", 150}, // trailing zeros are not decimals
		{"1000.5000000", 100050},
		{"12.34", 1234},
		{"0000012.34", 1234}, // not JSON, but exact all the same
		{"1e3", 100000},
		{"1E3", 100000},
		{"1e+3", 100000},
		{"1e0", 100},
		{"1.5e2", 15000},
		{"1.25e1", 1250},
		{"12345e-2", 12345},
		{"1e-2", 1},
		{"10e-3", 1},
		{"0.0001e2", 1},
		{"1000000000000", MaxMoney}, // the limit itself, 1e12
		{"1e12", MaxMoney},
		{"1000000000000.00", MaxMoney},
		{"0.000000000001e24", MaxMoney},
		{"100000000000000000000e-8", MaxMoney},
		{"999999999999.99", MaxMoney - 1},
		{"1.13", 113}, // int(1.13 * 100) is 112 in float64
		{"4.35", 435}, // int(4.35 * 100) is 434 in float64
		{"123456789012.34", 12345678901234},
	}
	for _, c := range ok {
		got, err := ParseMoney(c.text)
		if err != nil || got != c.want {
			t.Errorf("ParseMoney(%q) = %d, %v; want %d cents", c.text, got, err, c.want)
		}
	}

	bad := []string{
		"", "0", "0.0", "0.00", "0e5", "-0", "-1", "-0.01", "+1", "-1e3",
		"0.001", "0.009", "1.001", "1.234", "12345e-3", "1e-3", "0.015", "1000000000000.001",
		"1000000000000.01", "1000000000001", "1e13", "1.0000000000001e12", "10000000000000000000000",
		"9223372036854775807", "92233720368547758.08", "1e20", "1e400", "1e-400",
		"1e99999999999999999999", "1e-99999999999999999999", "1" + strings.Repeat("0", 400), "0." + strings.Repeat("0", 400) + "1",
		"abc", "NaN", "Infinity", "-Infinity", "1.2.3", ".5", "5.", "1e", "1e+", "1e-", "1ee2", "1e2.5", "0x10", "1_000",
		" 1", "1 ", "1,5", "١", "１", "\"1\"", "true", "null",
	}
	for _, text := range bad {
		if got, err := ParseMoney(text); err == nil {
			t.Errorf("ParseMoney(%q) = %d cents, want an error", text, got)
		}
	}
}

func TestMoneyString(t *testing.T) {
	cases := []struct {
		m    Money
		want string
	}{
		{1, "0.01"}, {10, "0.1"}, {30, "0.3"}, {99, "0.99"}, {100, "1"}, {110, "1.1"}, {150, "1.5"},
		{100000, "1000"}, {100050, "1000.5"}, {123456, "1234.56"}, {MaxMoney - 1, "999999999999.99"},
		{MaxMoney, "1000000000000"}, {0, "0"}, {-150, "-1.5"}, {-1, "-0.01"},
	}
	for _, c := range cases {
		if got := c.m.String(); got != c.want {
			t.Errorf("Money(%d).String() = %q, want %q", int64(c.m), got, c.want)
		}
	}
}

// The sums a float64 gets wrong are exact in cents: 0.1 + 0.2 is 0.3, and
// adding 0.01 a thousand times gives 10.
func TestMoneyArithmeticIsExact(t *testing.T) {
	a, _ := ParseMoney("0.1")
	b, _ := ParseMoney("0.2")
	if s := (a + b).String(); s != "0.3" {
		t.Errorf("0.1 + 0.2 = %s", s)
	}
	cent, _ := ParseMoney("0.01")
	var sum Money
	for range 1000 {
		sum += cent
	}
	if sum.String() != "10" {
		t.Errorf("1000 × 0.01 = %s", sum)
	}
	big, _ := ParseMoney("999999999999.99")
	if s := (big + cent).String(); s != "1000000000000" {
		t.Errorf("999999999999.99 + 0.01 = %s", s)
	}
}

func TestMoneyRoundTrips(t *testing.T) {
	for _, m := range []Money{1, 9, 10, 11, 99, 100, 101, 12345, 100000, MaxMoney - 1, MaxMoney} {
		got, err := ParseMoney(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMoney(%q) = %d, %v; want %d", m.String(), got, err, m)
		}
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back Money
		if err := json.Unmarshal(raw, &back); err != nil || back != m {
			t.Errorf("JSON %s decodes to %d, %v; want %d", raw, back, err, m)
		}
	}
	var m Money
	if err := json.Unmarshal([]byte("0.001"), &m); err == nil {
		t.Errorf("JSON 0.001 decoded to %d cents", m)
	}
}
