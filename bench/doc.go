// Package bench holds what runs servers as separate processes: the
// reference C epoll echo server (cecho.c), the capacity test (one server
// process holding 19,000 idle connections) and ping-pong benchmarks that
// report server CPU per round trip, plain and over TLS (with RSS per idle
// connection).
//
//	go test ./bench/ -run Capacity -v                  # capacity and memory per connection
//	go test ./bench/ -run '^$' -bench PingPong -benchtime 3s
//	go test ./bench/ -run '^$' -bench TLS -benchtime 3s
//
// The package has no code of its own outside its tests.
package bench
