package engine

func platformBackends() []Backend { return []Backend{NewMmsgBackend(nil)} }

func defaultBackend(log *Logger) Backend { return NewMmsgBackend(log) }

func openMmsg(log *Logger) (Backend, error) { return NewMmsgBackend(log), nil }
