package pdf

import (
	"strings"

	"github.com/shopspring/decimal"
)

// minorUnits lists the ISO 4217 currencies whose minor unit is not 2 digits.
var minorUnits = map[string]int32{
	// No minor unit.
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0,
	"KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0,
	"XAF": 0, "XOF": 0, "XPF": 0,
	// Three digits.
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	// Four digits.
	"CLF": 4, "UYW": 4,
}

// MinorUnits reports the number of decimal digits of the currency's minor
// unit as ISO 4217 defines it: 0 for JPY, 2 for USD, EUR and GBP, 3 for KWD
// and BHD. A currency it does not know, including an invalid code, gets 2.
func MinorUnits(currency string) int32 {
	if n, ok := minorUnits[currency]; ok {
		return n
	}
	return 2
}

// LineTotal returns quantity × unit price of l, rounded half away from zero
// to the minor units of currency (see [MinorUnits]). A negative quantity or
// unit price gives a negative total (a discount or credit line).
func LineTotal(l Line, currency string) decimal.Decimal {
	return l.Quantity.Mul(l.UnitPrice).Round(MinorUnits(currency))
}

// Subtotal returns the sum of the invoice's line totals, each rounded as
// [LineTotal] rounds it, so the printed lines add up to the printed sum.
// It is also the invoice's total: an [Invoice] carries no taxes. An
// invoice without lines whose Amount is set has that amount as its
// subtotal and total.
func Subtotal(inv Invoice) decimal.Decimal {
	if len(inv.Lines) == 0 && inv.Amount.Valid {
		return inv.Amount.Decimal
	}
	sum := decimal.Zero
	for _, l := range inv.Lines {
		sum = sum.Add(LineTotal(l, inv.Currency))
	}
	return sum
}

// FormatMoney formats amount in currency as the document prints it: the
// currency code, a space, and the amount rounded half away from zero to the
// currency's minor units with "," between thousands and "." before the
// fraction, e.g. "EUR 1,234.50", "JPY 1,235", "KWD -0.125".
func FormatMoney(amount decimal.Decimal, currency string) string {
	return currency + " " + formatAmount(amount, currency)
}

// formatAmount is [FormatMoney] without the currency code.
func formatAmount(amount decimal.Decimal, currency string) string {
	places := MinorUnits(currency)
	return groupDigits(amount.Round(places).StringFixed(places))
}

// formatPrice formats a unit price with the currency's minor units, or
// with more decimals when the price has them (0.0125 per unit stays
// 0.0125): a unit price is printed exactly, never rounded.
func formatPrice(price decimal.Decimal, currency string) string {
	places := MinorUnits(currency)
	_, frac, _ := strings.Cut(price.String(), ".")
	if n := int32(len(frac)); n > places {
		places = n
	}
	return groupDigits(price.StringFixed(places))
}

// formatQuantity formats a quantity exactly, without trailing zeros.
func formatQuantity(q decimal.Decimal) string {
	return groupDigits(q.String())
}

// groupDigits puts "," between the thousands of the integer part of a
// plain decimal string such as "-1234567.50". A negative value that shows
// as zero ("-0.00") loses its sign.
func groupDigits(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if strings.Trim(intPart+frac, "0") == "" {
		sign = ""
	}

	var b strings.Builder
	b.Grow(len(sign) + len(intPart) + len(intPart)/3 + 1 + len(frac))
	b.WriteString(sign)
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}
