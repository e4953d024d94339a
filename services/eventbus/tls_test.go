package eventbus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/personscore/eventbus/eventbustest"
)

// testPKI is a throwaway CA with leaf certificates for local TLS listeners.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "eventbus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: key, pool: pool}
}

// leaf issues a server certificate valid only for the given DNS name or IP.
func (p *testPKI) leaf(t *testing.T, dnsName string, ip net.IP) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "eventbus test server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if dnsName != "" {
		tmpl.DNSNames = []string{dnsName}
	}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsListener terminates TLS and either hangs up (upstream "") or relays the
// plaintext to upstream. It counts completed handshakes.
type tlsListener struct {
	net.Listener
	handshakes atomic.Int32
	wg         sync.WaitGroup
}

func startTLSListener(t *testing.T, cert tls.Certificate, upstream string) *tlsListener {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	tl := &tlsListener{Listener: l}
	tl.wg.Add(1)
	go func() {
		defer tl.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tl.wg.Add(1)
			go func() {
				defer tl.wg.Done()
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				tl.handshakes.Add(1)
				if upstream == "" {
					return
				}
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return tl
}

func (l *tlsListener) port() string {
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// amqps:// works: the connection dials TLS with the configured roots, verifies
// each node against its own name (node A's certificate only names
// "localhost", node B's only 127.0.0.1), and runs AMQP over it. Node B
// terminates TLS in front of the shared plaintext broker, which is not
// reconfigured; node A completes a handshake and hangs up, so the connection
// must move on to B.
func TestAMQPSOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	broker, err := url.Parse(eventbustest.BrokerURL())
	if err != nil {
		t.Fatal(err)
	}
	upstream := broker.Host
	if !strings.Contains(upstream, ":") {
		upstream += ":5672"
	}
	nodeA := startTLSListener(t, pki.leaf(t, "localhost", nil), "")
	nodeB := startTLSListener(t, pki.leaf(t, "", net.ParseIP("127.0.0.1")), upstream)
	user := broker.User.String()
	urls := []string{"amqps://" + user + "@localhost:" + nodeA.port() + "/", "amqps://" + user + "@127.0.0.1:" + nodeB.port() + "/"}

	tlsCfg := &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12}
	conn := openConn(t, ConnConfig{URLs: urls, TLS: tlsCfg})
	if nodeA.handshakes.Load() == 0 || nodeB.handshakes.Load() == 0 {
		t.Fatalf("handshakes: node A %d, node B %d; want both", nodeA.handshakes.Load(), nodeB.handshakes.Load())
	}
	if tlsCfg.ServerName != "" {
		t.Errorf("the caller's TLS config was modified: ServerName %q", tlsCfg.ServerName)
	}

	f := newFixture(t)
	raw := rawChannel(t)
	q := f.bindQueue(raw, "tls.works")
	pub := NewPublisher(conn, PublisherConfig{Exchange: f.exchange, Metrics: f.metrics})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	ev := mustEvent(t, "tls.works", "1", 1, nil)
	if err := pub.Publish(ctx, ev); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
	if got := drain(t, raw, q, 1, 5*time.Second); got[0].MessageId != ev.ID {
		t.Errorf("got %s, want %s", got[0].MessageId, ev.ID)
	}
}

// Without the CA the TLS handshake fails: certificates really are verified.
func TestAMQPSRejectsUnknownCA(t *testing.T) {
	pki := newTestPKI(t)
	node := startTLSListener(t, pki.leaf(t, "", net.ParseIP("127.0.0.1")), "")
	conn := Open(ConnConfig{URLs: []string{"amqps://guest:guest@127.0.0.1:" + node.port() + "/"},
		TLS: &tls.Config{MinVersion: tls.VersionTLS12}, Name: eventbustest.Unique("eventbus-test")})
	defer conn.Close()
	waitFor(t, 5*time.Second, "a failed dial", func() bool { return conn.LastError() != nil })
	var unknown x509.UnknownAuthorityError
	if err := conn.LastError(); !strings.Contains(err.Error(), "certificate") && !errors.As(err, &unknown) {
		t.Errorf("dial error %v, want a certificate verification failure", err)
	}
	if conn.Connected() {
		t.Error("connected through an untrusted certificate")
	}
}
