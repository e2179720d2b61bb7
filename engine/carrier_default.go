//go:build !linux

package engine

import "errors"

func sysCarrier() (map[int]bool, error) { return nil, errors.ErrUnsupported }
