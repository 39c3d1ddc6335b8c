// h3-quicgo: an HTTP/3 client on quic-go (Debian's golang-github-lucas-clemente-quic-go-dev,
// built offline in GOPATH mode), for interop tests against Turnpike's HTTP/3 server: GET on N
// parallel streams of one connection (every byte checked against the testkit's pattern), plain
// CONNECT to a TCP echo and extended CONNECT (RFC 9220) to an echo, both with HTTP datagrams
// (RFC 9297). It prints one JSON line and exits 0 only when everything came back intact.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

const period = 251 // byte i of a /bytes/N body is i % 251

type streamResult struct {
	Status        int    `json:"status"`
	Bytes         int64  `json:"bytes"`
	ContentLength int64  `json:"content_length"`
	PatternOK     bool   `json:"pattern_ok"`
	SHA256        string `json:"sha256"`
	Error         string `json:"error,omitempty"`
}

type summary struct {
	OK       bool           `json:"ok"`
	Mode     string         `json:"mode"`
	Error    string         `json:"error,omitempty"`
	Streams  int            `json:"streams,omitempty"`
	Bytes    int64          `json:"bytes"`
	Seconds  float64        `json:"seconds"`
	PerStrm  []streamResult `json:"per_stream,omitempty"`
	Status   int            `json:"status,omitempty"`
	Echoed   int64          `json:"echoed,omitempty"`
	EchoOK   bool           `json:"echo_ok,omitempty"`
	DgSent   int            `json:"datagrams_sent"`
	DgEchoed int            `json:"datagrams_echoed"`
	DgBad    int            `json:"datagrams_bad"`
	Version  string         `json:"quic_version,omitempty"`
	ALPN     string         `json:"alpn,omitempty"`
}

func fail(s *summary, err error) {
	s.OK = false
	s.Error = err.Error()
	out(s)
	os.Exit(1)
}

func out(s *summary) {
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
}

// patternChecker checks a body against the pattern as it streams by.
type patternChecker struct {
	off int64
	ok  bool
	h   hashWriter
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func (p *patternChecker) Write(b []byte) (int, error) {
	for i, c := range b {
		if p.ok && c != byte((p.off+int64(i))%period) {
			p.ok = false
		}
	}
	p.off += int64(len(b))
	p.h.Write(b)
	return len(b), nil
}

func get(ctx context.Context, rt *http3.SingleDestinationRoundTripper, u string) streamResult {
	var r streamResult
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer res.Body.Close()
	r.Status = res.StatusCode
	r.ContentLength = res.ContentLength
	pc := &patternChecker{ok: true, h: sha256.New()}
	n, err := io.CopyBuffer(pc, res.Body, make([]byte, 64<<10))
	r.Bytes = n
	r.PatternOK = pc.ok
	r.SHA256 = hex.EncodeToString(pc.h.Sum(nil))
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// tunnel sends a CONNECT (plain when protocol is empty, else extended with :protocol), writes
// `payload` into the stream and checks that the same bytes come back, and echoes datagrams.
func tunnel(ctx context.Context, rt *http3.SingleDestinationRoundTripper, s *summary, authority, path, protocol string, payload []byte, datagrams int) error {
	str, err := rt.OpenRequestStream(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	req := &http.Request{Method: http.MethodConnect, Header: http.Header{}, Host: authority}
	if protocol == "" {
		req.URL = &url.URL{Host: authority}
	} else {
		// quic-go sends :protocol from Proto, and :scheme and :path from the URL.
		req.Proto = protocol
		req.URL = &url.URL{Scheme: "https", Host: authority, Path: path}
	}
	req = req.WithContext(ctx)
	if err := str.SendRequestHeader(req); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	res, err := str.ReadResponse()
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	s.Status = res.StatusCode
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("CONNECT answered %d", res.StatusCode)
	}
	// Datagrams first (while the stream is surely open), each with its index in it.
	var dgWG sync.WaitGroup
	if datagrams > 0 {
		dgWG.Add(1)
		go func() {
			defer dgWG.Done()
			seen := map[int]bool{}
			for {
				dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				b, err := str.ReceiveDatagram(dctx)
				cancel()
				if err != nil {
					return
				}
				var i int
				if _, err := fmt.Sscanf(string(b), "dgram-%d", &i); err != nil || i < 0 || i >= datagrams || seen[i] || string(b) != fmt.Sprintf("dgram-%d", i) {
					s.DgBad++
					continue
				}
				seen[i] = true
				s.DgEchoed++
				if s.DgEchoed == datagrams {
					return
				}
			}
		}()
		for i := 0; i < datagrams; i++ {
			if err := str.SendDatagram([]byte(fmt.Sprintf("dgram-%d", i))); err != nil {
				return fmt.Errorf("send datagram: %w", err)
			}
			s.DgSent++
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Write and read at once: the echo only takes as much as it can send back.
	werr := make(chan error, 1)
	go func() {
		_, err := str.Write(payload)
		if err == nil {
			err = str.Close()
		}
		werr <- err
	}()
	got := bytes.NewBuffer(make([]byte, 0, len(payload)))
	_, rerr := io.CopyBuffer(got, str, make([]byte, 64<<10))
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	dgWG.Wait()
	s.Echoed = int64(got.Len())
	s.EchoOK = bytes.Equal(got.Bytes(), payload)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return fmt.Errorf("read: %w", rerr)
	}
	if !s.EchoOK {
		return fmt.Errorf("echoed %d of %d bytes, equal: %v", got.Len(), len(payload), s.EchoOK)
	}
	if datagrams > 0 && s.DgEchoed == 0 {
		return errors.New("no datagram came back")
	}
	return nil
}

func main() {
	caFile := flag.String("ca", "", "PEM file of the CA that signed the server's certificate")
	streams := flag.Int("n", 1, "get: parallel requests on one connection")
	sni := flag.String("sni", "localhost", "server name to verify")
	connectTo := flag.String("connect", "", "CONNECT to this host:port (plain CONNECT)")
	protocol := flag.String("protocol", "", "extended CONNECT (RFC 9220) with this :protocol")
	path := flag.String("path", "/", "extended CONNECT: :path")
	size := flag.Int("bytes", 1<<20, "CONNECT: bytes to send through the tunnel")
	datagrams := flag.Int("datagrams", 0, "CONNECT: HTTP datagrams to send on the stream")
	timeout := flag.Duration("timeout", 60*time.Second, "overall time limit")
	flag.Parse()
	s := &summary{Mode: "get"}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: h3-quicgo --ca FILE [-n N] https://HOST:PORT/PATH\n"+
			"       h3-quicgo --ca FILE --connect HOST:PORT [--bytes B] [--datagrams K] https://HOST:PORT/\n"+
			"       h3-quicgo --ca FILE --protocol P --path /PATH [--bytes B] [--datagrams K] https://HOST:PORT/")
		os.Exit(2)
	}
	target, err := url.Parse(flag.Arg(0))
	if err != nil {
		fail(s, err)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fail(s, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail(s, errors.New("no certificate in the CA file"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	tlsConf := &tls.Config{RootCAs: pool, ServerName: *sni, NextProtos: []string{http3.NextProtoH3}}
	qconf := &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 30 * time.Second}
	start := time.Now()
	conn, err := quic.DialAddr(ctx, target.Host, tlsConf, qconf)
	if err != nil {
		fail(s, fmt.Errorf("dial: %w", err))
	}
	defer conn.CloseWithError(0, "")
	st := conn.ConnectionState()
	s.Version = st.Version.String()
	s.ALPN = st.TLS.NegotiatedProtocol
	rt := &http3.SingleDestinationRoundTripper{Connection: conn, EnableDatagrams: true}

	if *connectTo != "" || *protocol != "" {
		s.Mode = "connect"
		authority := *connectTo
		if *protocol != "" {
			s.Mode = "extended-connect"
			authority = target.Host
			// Extended CONNECT needs the server's SETTINGS_ENABLE_CONNECT_PROTOCOL first.
			hc := rt.Start()
			select {
			case <-hc.ReceivedSettings():
			case <-ctx.Done():
				fail(s, errors.New("no SETTINGS from the server"))
			}
			if !hc.Settings().EnableExtendedConnect || !hc.Settings().EnableDatagrams {
				fail(s, fmt.Errorf("server settings: extended connect %v, datagrams %v",
					hc.Settings().EnableExtendedConnect, hc.Settings().EnableDatagrams))
			}
		}
		payload := make([]byte, *size)
		for i := range payload {
			payload[i] = byte(i*7 + i/1000)
		}
		err := tunnel(ctx, rt, s, authority, *path, *protocol, payload, *datagrams)
		s.Seconds = time.Since(start).Seconds()
		s.Bytes = s.Echoed
		if err != nil {
			fail(s, err)
		}
		s.OK = true
		out(s)
		return
	}

	s.Streams = *streams
	s.PerStrm = make([]streamResult, *streams)
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s.PerStrm[i] = get(ctx, rt, target.String())
		}(i)
	}
	wg.Wait()
	s.Seconds = time.Since(start).Seconds()
	s.OK = true
	for _, r := range s.PerStrm {
		s.Bytes += r.Bytes
		if r.Error != "" || r.Status != 200 || r.Bytes != r.ContentLength || !r.PatternOK {
			s.OK = false
		}
	}
	out(s)
	if !s.OK {
		os.Exit(1)
	}
}
