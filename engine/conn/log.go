package conn

// Logf receives the backends' rare messages (a GSO send refused, io_uring
// unavailable); nil discards them. A backend never logs per packet.
type Logf func(format string, args ...any)

func (f Logf) printf(format string, args ...any) {
	if f != nil {
		f(format, args...)
	}
}
