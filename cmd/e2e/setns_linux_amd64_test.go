package e2e

// sysSetns is setns(2)'s number (arch/x86/entry/syscalls/syscall_64.tbl):
// package syscall's table for amd64 predates it.
const sysSetns = 308
