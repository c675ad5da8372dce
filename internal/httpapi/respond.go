package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
)

// errorBody is every error answer: {"error":"..."}.
type errorBody struct {
	Error string `json:"error"`
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers status with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// internalError logs err with the request id and answers 500 without the
// details.
func (h *Handler) internalError(w http.ResponseWriter, r *http.Request, op string, err error) {
	ri := info(r.Context())
	attrs := []slog.Attr{slog.String("request_id", ri.id), slog.String("op", op), slog.Any("error", err)}
	if ri.tenantID != "" {
		attrs = append(attrs, slog.String("tenant_id", ri.tenantID))
	}
	h.log.LogAttrs(r.Context(), slog.LevelError, "http handler error", attrs...)
	writeError(w, http.StatusInternalServerError, "internal error")
}

// errBadBody is wrapped by decodeJSON for every body that is not one valid
// JSON object of the expected shape.
var errBadBody = errors.New("invalid request body")

// decodeJSON decodes exactly one JSON object into dst, refusing unknown
// fields and trailing data. It answers the error itself (400 or 413) and
// returns false when the body is unusable.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		// Exactly one value: anything but EOF after it is an error.
		if _, terr := dec.Token(); terr != io.EOF {
			err = fmt.Errorf("trailing data after the JSON object")
			if terr != nil && isBodyTooLarge(terr) {
				err = terr
			}
		}
	}
	switch {
	case err == nil:
		return true
	case isBodyTooLarge(err):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%v: empty body", errBadBody))
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%v: %v", errBadBody, err))
	}
	return false
}

// joinSorted joins names in sorted order with ", ".
func joinSorted(names []string) string {
	slices.Sort(names)
	return strings.Join(names, ", ")
}
