package mailer

// FromConfig returns the mailer the configuration asks for: SMTP to smtpURL
// when it is set, otherwise .eml files in outboxDir.
func FromConfig(smtpURL, outboxDir string) (Mailer, error) {
	if smtpURL != "" {
		return NewSMTP(smtpURL)
	}
	return NewFile(outboxDir)
}
