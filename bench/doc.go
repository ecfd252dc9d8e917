// Package bench holds what runs servers as separate processes: the
// reference C epoll echo server (cecho.c), the capacity test (one server
// process holding 19,000 idle connections), ping-pong benchmarks that
// report server CPU per round trip, plain and over TLS (with RSS per idle
// connection), and two chat benchmarks: a room
// offered up to ten times what it delivers (flow control), and 9,000
// members joining one room (the presence limit).
//
//	go test ./bench/ -run Capacity -v                  # capacity and memory per connection
//	go test ./bench/ -run '^$' -bench PingPong -benchtime 3s
//	go test ./bench/ -run '^$' -bench TLS -benchtime 3s
//	go test ./bench/ -run '^$' -bench FanoutOverload   # no collapse past capacity
//	go test ./bench/ -run '^$' -bench PresenceStorm    # frames, RSS, join time of a 9,000-member room
//
// The package has no code of its own outside its tests.
package bench
