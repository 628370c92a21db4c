// Package postfixtest runs private, throw-away Postfix instances and an SMTP
// sink for end-to-end tests of Postfix milters.
//
// A typical test starts a [Sink], starts an [Instance] that relays all mail
// to that sink through the milter under test, submits mail with
// [Instance.Send] and inspects what arrived with [Sink.WaitFor]:
//
//	sink := postfixtest.StartSink(t)
//	pf := postfixtest.Start(t, postfixtest.Options{
//		Milter:  "inet:" + milterAddr,
//		RelayTo: sink.Addr(),
//	})
//	if err := pf.Send("a@example.com", []string{"b@example.com"}, msg); err != nil {
//		t.Fatal(err)
//	}
//	got := sink.WaitFor(t, 1, 10*time.Second)
//
// Each [Instance] has its own configuration, queue and data directories under
// a fresh temporary directory, listens only on 127.0.0.1 and needs neither DNS
// nor internet access, so instances in different test packages (which go test
// runs in parallel) do not interfere with each other or with a system Postfix.
//
// Requirements: Postfix (postfix, postconf and postqueue) must be installed
// and the tests must run as root, because "postfix start" insists on it.
// The helpers never skip: if Postfix is missing or does not start, the test
// fails with the reason and the instance's log, so that CI cannot silently
// lose coverage.
//
// One piece of global state is touched: when run by a user other than root,
// sendmail and postqueue refuse a configuration directory that is not listed
// in alternate_config_directories of the default main.cf ("unauthorized
// configuration directory name"). So that tests can also submit mail that
// way, [Start] adds each instance's directory there (under an flock shared by
// all test processes) and removes it again when the test ends. Entries left
// behind by interrupted test runs are cleaned up, and their Postfix processes
// stopped, the next time [Start] runs.
package postfixtest
