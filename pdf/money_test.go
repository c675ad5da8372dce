package pdf

import (
	"testing"

	"github.com/shopspring/decimal"
)

func TestMinorUnits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		currency string
		want     int32
	}{
		{"JPY", 0},
		{"KRW", 0},
		{"USD", 2},
		{"EUR", 2},
		{"GBP", 2},
		{"KWD", 3},
		{"BHD", 3},
		{"XYZ", 2}, // unknown
		{"", 2},    // invalid
		{"eur", 2}, // invalid: codes are uppercase
	}
	for _, tt := range tests {
		if got := MinorUnits(tt.currency); got != tt.want {
			t.Errorf("MinorUnits(%q) = %d, want %d", tt.currency, got, tt.want)
		}
	}
}

func TestFormatMoney(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		amount   string
		currency string
		want     string
	}{
		{"zero EUR", "0", "EUR", "EUR 0.00"},
		{"thousands", "1234.5", "EUR", "EUR 1,234.50"},
		{"below thousand", "999.99", "USD", "USD 999.99"},
		{"exact thousand", "1000", "GBP", "GBP 1,000.00"},
		{"large", "9999999999.99", "EUR", "EUR 9,999,999,999.99"},
		{"larger than float64 keeps", "12345678901234567.89", "USD", "USD 12,345,678,901,234,567.89"},
		{"negative", "-1234.5", "EUR", "EUR -1,234.50"},
		{"negative below thousand", "-10", "EUR", "EUR -10.00"},
		{"JPY no minor unit", "1234567", "JPY", "JPY 1,234,567"},
		{"JPY rounds half away from zero", "1234.5", "JPY", "JPY 1,235"},
		{"JPY negative rounds away from zero", "-1234.5", "JPY", "JPY -1,235"},
		{"KWD three digits", "1234.5", "KWD", "KWD 1,234.500"},
		{"KWD rounds", "0.1235", "KWD", "KWD 0.124"},
		{"BHD", "-0.125", "BHD", "BHD -0.125"},
		{"EUR half up", "0.005", "EUR", "EUR 0.01"},
		{"EUR half down stays", "0.0049", "EUR", "EUR 0.00"},
		{"EUR negative half away from zero", "-0.005", "EUR", "EUR -0.01"},
		{"negative zero loses sign", "-0.001", "EUR", "EUR 0.00"},
		{"unknown currency two digits", "1.5", "XYZ", "XYZ 1.50"},
		{"many digits of fraction", "2.675", "USD", "USD 2.68"}, // 2.67 with float64
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := FormatMoney(dec(tt.amount), tt.currency); got != tt.want {
				t.Errorf("FormatMoney(%s, %s) = %q, want %q", tt.amount, tt.currency, got, tt.want)
			}
		})
	}
}

func TestLineTotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		qty, unit string
		currency  string
		want      string
	}{
		{"simple EUR", "3", "19.99", "EUR", "59.97"},
		{"fractional quantity", "2.5", "10.01", "EUR", "25.03"}, // 25.025 -> half away from zero
		{"fractional negative", "2.5", "-10.01", "EUR", "-25.03"},
		{"sub-cent unit price", "1000", "0.0125", "USD", "12.5"},
		{"sub-cent rounds", "3", "0.0125", "USD", "0.04"}, // 0.0375
		{"JPY", "3", "333.5", "JPY", "1001"},              // 1000.5
		{"JPY negative", "-3", "333.5", "JPY", "-1001"},
		{"KWD", "3", "1.2345", "KWD", "3.704"}, // 3.7035
		{"discount line", "1", "-50", "EUR", "-50"},
		{"credit via quantity", "-2", "15", "GBP", "-30"},
		{"zero quantity", "0", "99.99", "EUR", "0"},
		{"large", "1", "9999999999.99", "EUR", "9999999999.99"},
		{"large product", "100000", "99999.999", "EUR", "9999999900"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := Line{Quantity: dec(tt.qty), UnitPrice: dec(tt.unit)}
			if got := LineTotal(l, tt.currency); !got.Equal(dec(tt.want)) {
				t.Errorf("LineTotal(%s × %s %s) = %s, want %s", tt.qty, tt.unit, tt.currency, got, tt.want)
			}
		})
	}
}

func TestSubtotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		currency string
		lines    []Line
		want     string
	}{
		{"no lines", "EUR", nil, "0"},
		{"sample", "EUR", sampleInvoice().Lines, "1224.50"},
		{
			// Each line is rounded before the sum: 3 × 0.005 is 0.03 (three
			// printed 0.01 lines), not 0.015 -> 0.02.
			"sum of rounded lines", "EUR",
			[]Line{
				{Quantity: dec("1"), UnitPrice: dec("0.005")},
				{Quantity: dec("1"), UnitPrice: dec("0.005")},
				{Quantity: dec("1"), UnitPrice: dec("0.005")},
			},
			"0.03",
		},
		{
			"discount larger than lines", "USD",
			[]Line{
				{Quantity: dec("1"), UnitPrice: dec("10")},
				{Quantity: dec("1"), UnitPrice: dec("-25.5")},
			},
			"-15.5",
		},
		{
			"KWD", "KWD",
			[]Line{
				{Quantity: dec("1"), UnitPrice: dec("0.0005")},
				{Quantity: dec("2"), UnitPrice: dec("1.111")},
			},
			"2.223",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := Invoice{Currency: tt.currency, Lines: tt.lines}
			if got := Subtotal(inv); !got.Equal(dec(tt.want)) {
				t.Errorf("Subtotal = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFormatPriceAndQuantity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"price to minor units", formatPrice(dec("34.5"), "EUR"), "34.50"},
		{"price keeps extra digits", formatPrice(dec("0.0125"), "EUR"), "0.0125"},
		{"price trailing zeros trimmed to minor units", formatPrice(dec("12.5000"), "EUR"), "12.50"},
		{"price JPY", formatPrice(dec("1500"), "JPY"), "1,500"},
		{"price negative thousands", formatPrice(dec("-1234.5"), "USD"), "-1,234.50"},
		{"quantity integer", formatQuantity(dec("10")), "10"},
		{"quantity fraction", formatQuantity(dec("2.50")), "2.5"},
		{"quantity thousands", formatQuantity(decimal.NewFromInt(12345)), "12,345"},
		{"quantity negative", formatQuantity(dec("-1")), "-1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}
