package config

import (
	"errors"
	"fmt"
	"strings"
)

// ValidationError reports every problem found in the effective kube-proxy
// configuration. Each problem names the offending field, using the
// v1alpha1 JSON path for values that came from the config file (or from a
// default) and the command-line flag for values that came from a flag.
type ValidationError struct {
	// Problems holds one human-readable message per invalid value.
	Problems []string
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	return strings.Join(e.Problems, "\n")
}

// FileError reports a configuration file that could not be read or decoded.
type FileError struct {
	// Path is the file given with --config.
	Path string
	// Err is the underlying read or decode error.
	Err error
}

// Error describes the file and what went wrong with it.
func (e *FileError) Error() string {
	return fmt.Sprintf("config file %q: %v", e.Path, e.Err)
}

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error {
	return e.Err
}

// IsUsageError reports whether err (or an error it wraps) is a
// *ValidationError or a *FileError, i.e. a problem with how the program was
// invoked rather than a runtime failure. Callers typically exit with code 2
// for such errors.
func IsUsageError(err error) bool {
	var ve *ValidationError
	var fe *FileError
	return errors.As(err, &ve) || errors.As(err, &fe)
}
