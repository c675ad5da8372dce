package tasks

import "errors"

// Errors of the producer's side; match them with errors.Is.
var (
	// ErrTaskNotFound: no such task, or the task belongs to another tenant.
	// The HTTP API answers 404 for both, so a tenant cannot probe task ids.
	ErrTaskNotFound = errors.New("task not found")
	// ErrInvalidPayload: a payload failed validation before enqueue, or in
	// the worker after decoding.
	ErrInvalidPayload = errors.New("invalid task payload")
)
