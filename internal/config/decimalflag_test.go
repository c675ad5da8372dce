package config

import (
	"flag"
	"io"
	"testing"
)

// TestDecimalIntReadsDecimalDigitsOnly: a flag of this type reads "010" as
// ten, as WORKER_CONCURRENCY=010 and an HTTP route's "010" are read, and
// refuses Go's other integer syntaxes instead of reading them as another
// number.
func TestDecimalIntReadsDecimalDigitsOnly(t *testing.T) {
	for in, want := range map[string]int64{"010": 10, "7": 7, "-5": -5, "0": 0, "9223372036854775807": 1<<63 - 1} {
		var d DecimalInt
		if err := d.Set(in); err != nil || int64(d) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, d, err, want)
		}
	}
	for _, in := range []string{"", "-", "0x0a", "0o12", "0b1010", "1_0", "+10", " 10", "10 ", "1e3", "08x", "9223372036854775808"} {
		var d DecimalInt
		if err := d.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, d)
		}
	}
	// Through the flag package, as the binaries use it.
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var n DecimalInt
	fs.Var(&n, "n", "")
	if err := fs.Parse([]string{"-n", "010"}); err != nil || n != 10 {
		t.Errorf("-n 010 = %d, %v; want 10", n, err)
	}
	if err := fs.Parse([]string{"-n", "0x10"}); err == nil {
		t.Errorf("-n 0x10 accepted as %d", n)
	}
}
