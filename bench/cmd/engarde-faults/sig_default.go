//go:build !unix

package main

import "os"

// dnsOff and dnsOn are nil where there are no SIGUSR1 and SIGUSR2: the
// matrix runs on Linux only, and builds elsewhere.
var dnsOff, dnsOn os.Signal
