// Package webtest drives the pages every node serves, the dashboard at / and
// the browser wallet at /wallet, in a real headless Chromium against a real
// four-validator testnet started from the zkbank binary. It holds only tests:
//
//	go test ./webtest -count=1 -v
//
// A machine without Chromium skips them, except under CI=true, where a
// missing browser fails the run. Screenshots go to $ZKBANK_ARTIFACTS, or to
// webtest/artifacts/.
package webtest
