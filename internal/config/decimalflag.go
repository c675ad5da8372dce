package config

import (
	"errors"
	"strconv"
	"strings"
)

// DecimalInt is a flag.Value for an integer written in decimal digits,
// with an optional leading '-', as the environment's variables and the
// HTTP routes read one. flag.Int reads Go's syntax instead, in which a
// zero-padded "010" is 8 (octal) and "0x0a" is 10: "-concurrency 010" would
// run 8 handlers, and "enqueue pdf --invoice 010" render invoice 8.
type DecimalInt int64

// String returns d in decimal.
func (d *DecimalInt) String() string { return strconv.FormatInt(int64(*d), 10) }

// Set parses s: decimal digits, optionally after '-'; anything else
// (a sign '+', "0x", "0o", "0b", '_', spaces) is an error.
func (d *DecimalInt) Set(s string) error {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return errors.New("not an integer in decimal digits")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("out of the range of a 64-bit integer")
	}
	*d = DecimalInt(n)
	return nil
}
