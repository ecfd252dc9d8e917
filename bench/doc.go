// Package bench holds what runs servers as separate processes: the
// reference C epoll echo server (cecho.c), the capacity test (one server
// process holding 19,000 idle connections) and a ping-pong benchmark that
// reports server CPU per round trip.
//
//	go test ./bench/ -run Capacity -v                  # capacity and memory per connection
//	go test ./bench/ -run '^$' -bench PingPong -benchtime 3s
//
// The package has no code of its own outside its tests.
package bench
