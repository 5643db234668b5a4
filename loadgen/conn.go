package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// conn is one user's kept-alive HTTP/1.1 connection to the server, used by
// the measured requests: each request is written whole in one write and
// its answer read with net/http's own parser (http.ReadResponse), on the
// user's goroutine. net/http's Transport hands every request to two
// goroutines of the connection (a writer and a reader) and back, which
// was about half of the load generator's CPU, on a machine whose CPUs it
// may share with the server it measures.
type conn struct {
	scheme, host, addr string // host: the Host header; addr: host:port to dial
	prefix             string // the target's path (escaped), before every request's
	timeout            time.Duration
	ctx                context.Context // cut off: the request in flight fails at once

	c        net.Conn
	br       *bufio.Reader
	stop     func() bool // unregisters the cut-off of c
	lastUsed time.Time
	req      []byte       // the request being written
	body     bytes.Buffer // the last answer's body
}

// maxIdle is how long a kept-alive connection may sit unused before the
// next request dials anew rather than risk one the server (or a proxy
// before it) has closed meanwhile: nothing reads a connection between
// requests, so such a close shows only as the next request's failure
// (connection_closed). serve keeps idle connections for two minutes; the
// users of a run are never idle for long.
const maxIdle = 2 * time.Second

// maxAnswer bounds an answer's body (serve's largest answers are pages of
// a few hundred KB).
const maxAnswer = 16 << 20

func newConn(ctx context.Context, base string, timeout time.Duration) (*conn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("loadgen: target %q is not an http:// or https:// URL with a host", base)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	return &conn{scheme: u.Scheme, host: u.Host, addr: addr, prefix: strings.TrimRight(u.EscapedPath(), "/"), timeout: timeout, ctx: ctx}, nil
}

// answer is what a request got back. body is valid until the next request.
type answer struct {
	status int
	etag   string
	body   []byte
}

// do sends one request: path is the URL's path (and query), key the API
// key, body (when not nil) JSON, ifMatch (when > 0) the version for
// If-Match. An error is a transport failure; the connection is then
// closed and the next request dials anew.
func (c *conn) do(method, path, key string, body []byte, ifMatch int64) (answer, error) {
	if err := c.ctx.Err(); err != nil {
		return answer{}, err
	}
	if c.c != nil && time.Since(c.lastUsed) > maxIdle {
		c.close()
	}
	if c.c == nil {
		if err := c.dial(); err != nil {
			return answer{}, err
		}
	}
	a, err := c.roundTrip(method, path, key, body, ifMatch)
	if err != nil {
		c.close()
		if cerr := c.ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		return answer{}, err
	}
	c.lastUsed = time.Now()
	return a, nil
}

func (c *conn) dial() error {
	d := net.Dialer{Timeout: min(c.timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	var nc net.Conn
	var err error
	if c.scheme == "https" {
		td := tls.Dialer{NetDialer: &d, Config: &tls.Config{NextProtos: []string{"http/1.1"}}}
		nc, err = td.DialContext(c.ctx, "tcp", c.addr)
	} else {
		nc, err = d.DialContext(c.ctx, "tcp", c.addr)
	}
	if err != nil {
		return err
	}
	c.c = nc
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 16<<10)
	} else {
		c.br.Reset(nc)
	}
	// Cut off: whatever the connection waits for fails at once.
	c.stop = context.AfterFunc(c.ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	return nil
}

func (c *conn) roundTrip(method, path, key string, body []byte, ifMatch int64) (answer, error) {
	if err := c.c.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return answer{}, err
	}
	// The cut-off may have set its deadline just before this one: it must
	// win.
	if err := c.ctx.Err(); err != nil {
		return answer{}, err
	}
	b := c.req[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, c.prefix...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\nUser-Agent: upsell-loadgen\r\nAuthorization: Bearer "...)
	b = append(b, key...)
	if ifMatch > 0 {
		b = append(b, "\r\nIf-Match: \""...)
		b = strconv.AppendInt(b, ifMatch, 10)
		b = append(b, '"')
	}
	if body != nil {
		b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
	} else if method == http.MethodPost || method == http.MethodPut {
		b = append(b, "\r\nContent-Length: 0"...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.req = b
	if _, err := c.c.Write(b); err != nil {
		return answer{}, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return answer{}, err
	}
	c.body.Reset()
	n, err := c.body.ReadFrom(io.LimitReader(resp.Body, maxAnswer+1))
	resp.Body.Close()
	if err != nil {
		return answer{}, err
	}
	if n > maxAnswer {
		return answer{}, fmt.Errorf("an answer of more than %d bytes", maxAnswer)
	}
	if resp.Close {
		c.close() // the server ends the connection after this answer
	}
	return answer{status: resp.StatusCode, etag: resp.Header.Get("ETag"), body: c.body.Bytes()}, nil
}

func (c *conn) close() {
	if c.c == nil {
		return
	}
	c.stop()
	_ = c.c.Close()
	c.c = nil
}
