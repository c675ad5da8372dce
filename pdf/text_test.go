package pdf

import (
	"testing"
	"time"
)

func TestCleanText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		multiline bool
		want      string
	}{
		{"plain", "Müller GmbH", false, "Müller GmbH"},
		{"BMP scripts kept", "Zoë Ωmega Łódź €", false, "Zoë Ωmega Łódź €"},
		{"emoji replaced", "Thanks 🎉!", false, "Thanks \uFFFD!"},
		{"control replaced", "a\x00b\x07c", false, "a\uFFFDb\uFFFDc"},
		{"invalid utf-8 replaced", "a\xffb", false, "a\uFFFDb"},
		{"tab to space", "a\tb", false, "a b"},
		{"newlines to spaces", "a\r\nb\nc\rd", false, "a b c d"},
		{"newlines kept multiline", "a\r\nb\nc\rd", true, "a\nb\nc\nd"},
	}
	for _, tt := range tests {
		if got := cleanText(tt.in, tt.multiline); got != tt.want {
			t.Errorf("%s: cleanText(%q, %v) = %q, want %q", tt.name, tt.in, tt.multiline, got, tt.want)
		}
	}
}

func TestFormatDate(t *testing.T) {
	t.Parallel()
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Time{}, "-"},
		{time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC), "2026-03-01"},
		// The date in the time's own location, not in UTC.
		{time.Date(2026, 3, 1, 0, 30, 0, 0, berlin), "2026-03-01"},
	}
	for _, tt := range tests {
		if got := formatDate(tt.in); got != tt.want {
			t.Errorf("formatDate(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
