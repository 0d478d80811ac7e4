// Package browsertest drives the station's browser files (web/) in a real
// headless Chromium (Debian's chromium through chromedp) against the
// stationd binary on the test bed: a private pcscd, vpcd and the virtual
// card. It holds tests only.
//
// With CI=true a missing chromium, pcscd or vpcd fails the tests; elsewhere
// they are skipped with the remedy.
package browsertest
