//go:build !linux

package storage

import (
	"errors"
	"os"
)

// beneath is openat2(2)'s resolution, which only Linux has: elsewhere the
// store checks each path for links before its operation (refuseLinks).
type beneath struct{}

// openat2Available reports false: there is no openat2 here.
func openat2Available() bool { return false }

func openBeneath(string) (beneath, error)              { return beneath{}, errors.ErrUnsupported }
func (beneath) Close() error                           { return nil }
func (beneath) dir(string) (*os.File, error)           { return nil, errors.ErrUnsupported }
func (beneath) makeDir(string, bool) (*os.File, error) { return nil, errors.ErrUnsupported }
func openDocAt(*os.File, string) (*os.File, error)     { return nil, errors.ErrUnsupported }
func removeDocAt(*os.File, string) error               { return errors.ErrUnsupported }
