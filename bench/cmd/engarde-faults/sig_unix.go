//go:build unix

package main

import (
	"os"
	"syscall"
)

// dnsOff and dnsOn are the signals that stop and resume the DNS server's
// answers.
var dnsOff, dnsOn os.Signal = syscall.SIGUSR1, syscall.SIGUSR2
