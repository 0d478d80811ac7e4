package vpcd

// DisableQuickAck turns off the TCP_QUICKACK re-arming, so that a test can
// measure what it saves. Call it before Run.
func DisableQuickAck(s *Slot) { s.noQuickAck = true }

// RetryDelay is the pause before the slot dials vpcd again.
var RetryDelay = retryDelay
