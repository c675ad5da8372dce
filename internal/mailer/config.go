package mailer

// FromConfig returns the mailer the configuration asks for: SMTP to smtpURL
// (SMTP_URL) with opts (WithTLSMode: SMTP_TLS) when it is set, otherwise
// .eml files in outboxDir.
func FromConfig(smtpURL, outboxDir string, opts ...Option) (Mailer, error) {
	if smtpURL != "" {
		return NewSMTP(smtpURL, opts...)
	}
	return NewFile(outboxDir)
}
