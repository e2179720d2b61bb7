package uring

import (
	"errors"
	"fmt"
)

// ErrUnsupported is returned, wrapped with the reason, when io_uring
// or one of the features the engine needs is missing. It satisfies
// errors.Is(err, errors.ErrUnsupported), which tests skip on.
var ErrUnsupported = fmt.Errorf("io_uring unavailable: %w", errors.ErrUnsupported)

// Features is what Probe found.
type Features struct {
	// Flags are the optional setup flags the kernel accepts, among
	// SetupSingleIssuer, SetupDeferTaskrun, SetupCoopTaskrun,
	// SetupTaskrunFlag and SetupSubmitAll.
	Flags uint32
	// Features are the IORING_FEAT_* bits.
	Features uint32
	// SendZC reports IORING_OP_SEND_ZC.
	SendZC bool
}
