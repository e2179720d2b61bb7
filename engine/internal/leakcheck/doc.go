// Package leakcheck is the engine's tests' check, after every test of a
// package, that nothing the tests started is left: no goroutine running
// the module's code, and no file descriptor more than at the start
// (Linux: /proc/self/fd). Nothing here is linked into the programs.
package leakcheck
