package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// identity is one static-token user of the API server.
type identity struct {
	user   string
	groups []string
}

// identities: the admin (tests, helm, kubectl) and one per component.
var identities = map[string]identity{
	"admin":              {"personscore-admin", []string{"system:masters"}},
	"controller-manager": {"system:kube-controller-manager", nil},
	"scheduler":          {"system:kube-scheduler", nil},
	"kubelet":            {"system:node:" + nodeName, []string{"system:nodes"}},
	"kube-proxy":         {"system:kube-proxy", nil},
}

// writePKI creates the certificates, the service-account key pair, the token file and a
// kubeconfig per identity, unless they exist.
func (n *node) writePKI() error {
	if _, err := os.Stat(n.adminKubeconfig()); err == nil {
		return nil
	}
	if err := os.MkdirAll(n.path("pki"), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(n.path("kubeconfig"), 0o700); err != nil {
		return err
	}
	ca, caKey, err := n.newCA("ca", "personscore-node-ca")
	if err != nil {
		return err
	}
	ips := []net.IP{net.ParseIP(nodeIP), net.ParseIP(apiServiceIP), net.ParseIP("127.0.0.1")}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if err := n.newCert("apiserver", ca, caKey, pkix.Name{CommonName: "kube-apiserver"}, ips, dns, x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	// The API server's identity towards kubelets (logs, exec, metrics proxy).
	if err := n.newCert("apiserver-kubelet-client", ca, caKey, pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}}, nil, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return err
	}
	// Aggregated APIs (metrics-server) trust requests proxied with this client certificate.
	fp, fpKey, err := n.newCA("front-proxy-ca", "personscore-front-proxy-ca")
	if err != nil {
		return err
	}
	if err := n.newCert("front-proxy-client", fp, fpKey, pkix.Name{CommonName: "front-proxy-client"}, nil, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return err
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(n.pki("sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return err
	}
	if err := writePEM(n.pki("sa.pub"), "PUBLIC KEY", pub); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(n.pki("ca.crt"))
	if err != nil {
		return err
	}
	var tokens strings.Builder
	var adminKubeconfig string
	for name, id := range identities {
		token, err := randomHex(24)
		if err != nil {
			return err
		}
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", token, id.user, id.user, strings.Join(id.groups, ","))
		kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: personscore-node
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: personscore-node
  context:
    cluster: personscore-node
    user: %s
current-context: personscore-node
`, n.apiURL(), base64.StdEncoding.EncodeToString(caPEM), id.user, token, id.user)
		// The admin kubeconfig goes last: its presence marks the PKI as complete.
		if name == "admin" {
			adminKubeconfig = kc
			continue
		}
		if err := os.WriteFile(n.kubeconfig(name), []byte(kc), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(n.pki("tokens.csv"), []byte(tokens.String()), 0o600); err != nil {
		return err
	}
	return os.WriteFile(n.adminKubeconfig(), []byte(adminKubeconfig), 0o600)
}

func (n *node) newCA(name, cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(n.pki(name+".crt"), "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, writePEM(n.pki(name+".key"), "EC PRIVATE KEY", kb)
}

func (n *node) newCert(name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, subject pkix.Name, ips []net.IP, dns []string, usage x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(n.pki(name+".crt"), "CERTIFICATE", der); err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(n.pki(name+".key"), "EC PRIVATE KEY", kb)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func serial() *big.Int {
	s, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return s
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
