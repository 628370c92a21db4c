//go:build !linux

package postfixtest

// runWithTTY is run: pseudo-terminal support is only implemented for Linux,
// so elsewhere diagnostics of a failing "postfix start" may end up in syslog
// instead of the test output.
func runWithTTY(name string, args ...string) (string, error) {
	return run(name, args...)
}
