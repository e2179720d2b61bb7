package engine

func platformBackends() []Backend { return []Backend{NewMmsgBackend(nil)} }
