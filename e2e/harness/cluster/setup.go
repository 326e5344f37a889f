package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// module is the module path that marks the repository root's go.mod.
const module = "github.com/portico-dev/portico"

// RepoRoot walks up from the working directory to the directory whose go.mod declares
// the portico module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("cluster: working directory: %w", err)
	}
	for {
		if isRepoRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("cluster: no go.mod of %s above the working directory", module)
		}
		dir = parent
	}
}

func isRepoRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == module
		}
	}
	return false
}

// binary returns the path of a pinned binary, checking that it exists.
func (c *Cluster) binary(name string) (string, error) {
	dir := c.opts.BinDir
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "bin")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("cluster: %w (build it with e2e/tools/build.sh .cache/bin %s)", err, name)
	}
	return path, nil
}

// prepare makes the cluster directory, the service-account key pair and the token file.
func (c *Cluster) prepare() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != "" {
		return errors.New("cluster: already started")
	}
	dir, err := os.MkdirTemp(c.opts.WorkDir, dirPrefix)
	if err != nil {
		return fmt.Errorf("cluster: work dir: %w", err)
	}
	c.dir = dir
	if err := writeOwner(dir); err != nil {
		return err
	}
	for _, sub := range []string{"etcd", "certs"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	if err := writeServiceAccountKeys(dir); err != nil {
		return err
	}
	if c.opts.RealNodes {
		ips := []net.IP{c.opts.Topology.APIServerIP().AsSlice(), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}
		if err := writeServingCerts(filepath.Join(dir, "certs"), ips); err != nil {
			return err
		}
	}
	users := append([]User{{Name: AdminUser, Groups: []string{"system:masters"}}}, c.opts.Users...)
	for i := range users {
		if users[i].Token == "" {
			users[i].Token = randomToken()
		}
	}
	c.users = users
	return writeTokens(filepath.Join(dir, "tokens.csv"), users)
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	return hex.EncodeToString(b[:])
}

// writeServiceAccountKeys writes sa.key (PKCS#1) and sa.pub (PKIX) into dir.
func writeServiceAccountKeys(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("cluster: service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("cluster: service-account public key: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), priv, 0o600); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pubPEM, 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// writeTokens writes the apiserver's static token file: token,user,uid,"groups".
func writeTokens(path string, users []User) error {
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", u.Token, u.Name, u.Name, strings.Join(u.Groups, ","))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("cluster: tokens: %w", err)
	}
	return nil
}

// etcdArgv returns etcd's command line: a single member on the api namespace's loopback.
func (c *Cluster) etcdArgv() []string {
	bin, _ := c.binary("etcd") // Start checked it exists
	return []string{bin,
		"--name=portico-e2e",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=portico-e2e=http://127.0.0.1:2380",
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
}

// apiServerArgv returns the apiserver's command line.
func (c *Cluster) apiServerArgv() []string {
	bin, _ := c.binary("kube-apiserver") // Start checked it exists
	addr := c.opts.Topology.APIServerIP().String()
	argv := []string{bin,
		"--etcd-servers=http://127.0.0.1:2379",
		"--service-cluster-ip-range=" + c.opts.ServiceCIDR,
		"--bind-address=" + addr,
		"--advertise-address=" + addr,
		fmt.Sprintf("--secure-port=%d", APIServerPort),
		"--cert-dir=" + filepath.Join(c.dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(c.dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(c.dir, "sa.key"),
		"--token-auth-file=" + filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		// As kubeadm sets it: node agents such as kube-proxy and portico run privileged.
		"--allow-privileged=true",
	}
	if c.opts.RealNodes {
		certs := filepath.Join(c.dir, "certs")
		argv = append(argv, "--tls-cert-file="+filepath.Join(certs, servingCertFile),
			"--tls-private-key-file="+filepath.Join(certs, servingKeyFile))
	}
	return append(argv, c.opts.ExtraAPIServerFlags...)
}

// checkBinaries fails early, with a hint, when a pinned binary is missing.
func (c *Cluster) checkBinaries(names ...string) error {
	for _, n := range names {
		if _, err := c.binary(n); err != nil {
			return err
		}
	}
	return nil
}

// httpGet fetches a URL from inside the api namespace and returns the body of a 200.
func (c *Cluster) httpGet(ctx context.Context, url, token string) (string, error) {
	tr := &http.Transport{
		DialContext:     c.opts.Topology.Dialer(c.apiNS()),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test apiserver, self-signed
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("cluster: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("cluster: GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

func (c *Cluster) etcdHealthy(ctx context.Context) error {
	_, err := c.httpGet(ctx, "http://127.0.0.1:2379/health", "")
	return err
}

func (c *Cluster) apiServerReady(ctx context.Context) error {
	body, err := c.httpGet(ctx, c.APIServerURL()+"/readyz", c.users[0].Token)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("cluster: readyz: %q", body)
	}
	return nil
}

// Kubeconfig returns the admin kubeconfig's path. It points at the api address, so it
// works for processes in the node namespace linked to the api namespace (and in the api
// namespace itself), not in the root namespace.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.Dir(), "kubeconfig") }

// KubeconfigFor writes a kubeconfig for a user (see Options.Users) into the cluster's
// directory and returns its path.
func (c *Cluster) KubeconfigFor(user string) (string, error) {
	u, err := c.user(user)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir(), "kubeconfig-"+user)
	return path, c.writeKubeconfig(path, u)
}

// writeKubeconfig writes a kubeconfig with the bearer token of u and
// insecure-skip-tls-verify (the apiserver's certificate is self-signed).
func (c *Cluster) writeKubeconfig(path string, u User) error {
	const tmpl = `apiVersion: v1
kind: Config
clusters:
- name: portico-e2e
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: %s
  user:
    token: %s
contexts:
- name: portico-e2e
  context:
    cluster: portico-e2e
    user: %s
current-context: portico-e2e
`
	data := fmt.Sprintf(tmpl, c.APIServerURL(), u.Name, u.Token, u.Name) // names and tokens are plain words
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		return fmt.Errorf("cluster: kubeconfig: %w", err)
	}
	return nil
}
