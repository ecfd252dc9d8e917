package reactor

import "sync"

// handshakePool runs the TLS handshakes of a server's loops (tls.go): at
// most max at once, each on a goroutine started when one is needed and
// then kept, idle, until stop; past max, handshakes wait their turn in
// order. Until the first submit it has no goroutine and costs nothing.
//
// It is a minimal stand-in for the bounded worker pool of the offload
// work (issue 17, internal/reactor/workers.go on its branch), and is to be
// merged into it: the same submit and stop.
type handshakePool struct {
	max int

	mu       sync.Mutex
	work     sync.Cond // a function was queued, or stop
	queue    []func()
	started  int // goroutines alive
	idle     int // of them, waiting for work and not yet signalled
	stopping bool
	wg       sync.WaitGroup
}

func newHandshakePool(max int) *handshakePool {
	p := &handshakePool{max: max}
	p.work.L = &p.mu
	return p
}

// submit queues fn to run on a worker: an idle one, a new one if fewer
// than max exist, or else the first to finish what it runs. It never
// blocks.
func (p *handshakePool) submit(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, fn)
	switch {
	case p.idle > 0:
		p.idle-- // this one is taken: another submit must not count on it
		p.work.Signal()
	case p.started < p.max:
		p.started++
		p.wg.Go(p.run)
	}
}

// run is a worker: it runs queued functions, waits while there are none,
// and ends once stop has been called and the queue is empty.
func (p *handshakePool) run() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for len(p.queue) == 0 {
			if p.stopping {
				p.started--
				return
			}
			p.idle++
			p.work.Wait() // whoever signals takes idle back
		}
		fn := p.queue[0]
		p.queue[0] = nil
		if p.queue = p.queue[1:]; len(p.queue) == 0 {
			p.queue = nil
		}
		p.mu.Unlock()
		fn()
		p.mu.Lock()
	}
}

// stop ends the workers once the queue is empty, and waits for them.
func (p *handshakePool) stop() {
	p.mu.Lock()
	p.stopping = true
	p.idle = 0
	p.work.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
