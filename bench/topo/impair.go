package topo

// This file holds link impairments beyond Topo.Loss and Topo.Blackhole:
// a rate limit, and loss the sender does not see.

// Limit caps a link at rate (tc syntax: "100mbit") in both directions with
// a token bucket filter (tbf) on the egress of each end. Packets beyond the
// rate wait in the qdisc for up to latency, then are dropped; meanwhile
// they hold their socket's send buffer, so the sender sees a slow link, not
// a lossy one. Limit(link, "", "") removes the cap.
func (t *Topo) Limit(link, rate, latency string) error {
	for _, ns := range []string{t.Client, t.Server} {
		if rate == "" {
			_ = run("tc", "-n", ns, "qdisc", "del", "dev", link, "root") // absent when never limited
			continue
		}
		// A burst of at least rate/HZ, so that the bucket can fill
		// between two timer ticks; 64 KiB covers 100 Mbit/s at HZ=250.
		if err := run("tc", "-n", ns, "qdisc", "replace", "dev", link, "root", "tbf",
			"rate", rate, "burst", "64kb", "latency", latency); err != nil {
			return err
		}
	}
	return nil
}

// LossIngress drops percent of the UDP datagrams arriving on every link, in
// each namespace, so that each direction of each link loses that share;
// LossIngress(0) removes it. Unlike Loss, which drops in the sender's
// output hook, the sender does not notice: a drop there fails the send
// with EPERM, and a sendmmsg that meets it mid-batch returns the partial
// count, so a batching sender sends the dropped datagram again and loses
// less than percent. A link that loses packets on the wire looks like
// this instead.
func (t *Topo) LossIngress(percent int) error {
	return t.randomDrop("engarde_lossin", "in", "input", "iifname", percent)
}
