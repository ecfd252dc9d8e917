//go:build race

package engine

// raceEnabled reports a binary built with the race detector, whose runtime
// sleeps for a second at exit (GORACE atexit_sleep_ms) so that other
// goroutines can report races. Child processes skip that sleep (see
// childEnviron): a fork child exits once per connection.
const raceEnabled = true
