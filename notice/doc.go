// Package notice tells a sender that bccguard converted their message: it
// composes the notice (Japanese and English by default, or an admin's own
// text/template), limits it to one per sender per min_interval, and hands
// it to Postfix from a bounded queue in the background, so that the
// original message is never delayed or changed by it.
//
// A notice has the null envelope sender, so that it can never bounce back
// and loop, and goes to Postfix's reinjection service, which does not run
// bccguard: it cannot come back here.
package notice
