package engine

import "github.com/engarde-project/engarde/engine/internal/sys"

func sysCarrier() (map[int]bool, error) { return sys.CarrierUp() }
