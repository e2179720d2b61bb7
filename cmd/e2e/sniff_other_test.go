//go:build !linux

package e2e

import "errors"

// sniffMain needs Linux's packet sockets.
func sniffMain([]byte) (any, error) { return nil, errors.New("sniffing needs Linux") }
