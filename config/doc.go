// Package config reads engarde.yml, the configuration file that
// engarde-client and engarde-server share.
//
// The format is the original engarde's: a top-level client section and a
// server section, each read only by its own program. A program loads the
// file with [Load] (or [Parse] for bytes) and its [Role]; the other role's
// section is skipped without being looked at, so one file can be copied to
// both ends unchanged, or each end can keep only its own section.
//
//	client:
//	  listenAddr: "127.0.0.1:59401"
//	  dstAddr: "198.51.100.32:59402"
//	  excludedInterfaces: ["eth3", "wg0"]
//	server:
//	  listenAddr: "0.0.0.0:59402"
//	  dstAddr: "127.0.0.1:59301"
//
// engarde.yml.sample at the root of the repository documents every key,
// with the defaults that apply when a key is absent.
//
// # Strictness
//
// The section being loaded is checked completely, and every problem found
// is reported, not only the first: unknown keys (with a "did you mean"
// suggestion for near misses such as excludedInterface or listenaddr),
// duplicate keys, values of the wrong type, missing required addresses,
// malformed host:port addresses and numbers out of range. Each problem is
// an [*Error] naming the file, the line and the dotted path of the key, as
// in
//
//	engarde.yml:7: client.excludedInterface: unknown key "excludedInterface" (did you mean "excludedInterfaces"?)
//	engarde.yml:12: client.dstOverrides[0].dstAddr: invalid address "192.0.2.1": missing port; expected host:port
//
// List indexes in key paths count from 0. When there are several problems
// the error is an [errors.Join] of them in file order; [errors.As] finds the
// first.
//
// # Compatibility with the original
//
// Files written for the original engarde load unchanged. Like the YAML
// library it used, string values accept any scalar (password: 1234 is the
// string "1234") and an empty value means the default. YAML anchors,
// aliases and merge keys (<<) work anywhere in the section. Host names are
// checked for syntax only; nothing is resolved while loading.
package config
