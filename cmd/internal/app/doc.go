// Package app is the composition of the two programs: it maps the
// configuration file to the engine's options (with the environment's kill
// switches), wires zerolog to the engine's and the control plane's loggers,
// shows the engine to the control plane, and runs the command line,
// signals, SIGHUP reloads and the status subcommand.
package app
