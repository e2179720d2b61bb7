//go:build race

package engine

// raceEnabled slows the tests' traffic down: the race detector makes every
// goroutine several times slower, and loss from an overloaded test is not
// what the tests look for.
const raceEnabled = true
