package sys

// Link is what the kernel's RTM_GETLINK dump says of one interface beyond
// what package net reports.
type Link struct {
	// Carrier is IFF_LOWER_UP. net.Interface reports IFF_RUNNING
	// instead, which the kernel's linkwatch may update up to a second
	// after the carrier changes.
	Carrier bool
	// Kind is the link kind (IFLA_INFO_KIND inside IFLA_LINKINFO): the
	// rtnl_link_ops name of the driver that made the interface,
	// "wireguard" (drivers/net/wireguard/device.c), "tun" for TUN and TAP
	// devices alike (drivers/net/tun.c, tun_link_ops), "veth", "bridge";
	// empty for a device without rtnl_link_ops, as most physical NICs are.
	Kind string
}
