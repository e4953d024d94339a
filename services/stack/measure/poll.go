package measure

import "time"

// Every calls f every interval until the returned stop is called; stop waits
// for a call in progress and calls f once more, so the last reading is fresh.
func Every(interval time.Duration, f func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		f()
	}
}
