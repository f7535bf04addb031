package observability

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// proxyV2 is a PROXY protocol v2 header as an AWS NLB sends it: PROXY over TCP4 from
// src, or LOCAL (its health checks) when src is empty.
func proxyV2(src string) []byte {
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	if src == "" {
		return append(h, 0x20, 0x00, 0, 0)
	}
	h = append(h, 0x21, 0x11, 0, 12)
	h = append(h, net.ParseIP(src).To4()...)
	h = append(h, net.ParseIP("10.42.1.10").To4()...)
	h = binary.BigEndian.AppendUint16(h, 40000)
	h = binary.BigEndian.AppendUint16(h, 8000)
	return h
}

// rawCall sends header (may be nil) then one HTTP/1.1 request on a new connection, and
// returns the status.
func rawCall(t *testing.T, addr string, header []byte, method, path, body string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", method, path, len(body), body)
	if _, err := c.Write(append(append([]byte{}, header...), req...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	b, _ := readAll(resp)
	return resp.StatusCode, string(b)
}

// The gateway as the chart configures it behind an internet-facing NLB (issue 24, N1
// and N2): the Deployment's env and configuration file from values-eks.yaml with TLS
// and keys, run for real. Checked: a call without a key is refused even with the
// NLB's PROXY header, a keyed call through a PROXY header is served, the kubelet's
// probe (no header) and the NLB's health check (PROXY LOCAL) find /readyz.
func TestLiveGatewayBehindTheNLB(t *testing.T) {
	bin := os.Getenv("GATEWAY_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "infura-gateway")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build of the gateway: %v\n%s", err, out)
		}
	}
	upstream := httptest.NewServer(http.HandlerFunc(fakeRPC))
	defer upstream.Close()

	const key = "alice-test-key"
	sum := sha256.Sum256([]byte(key))
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keys, []byte(fmt.Sprintf(`config:
  keys:
    entries:
      - {name: alice, sha256: %q, plan: free}
  plans:
    free: {requests_per_second: 100, burst: 100}
`, hex.EncodeToString(sum[:]))), 0o644); err != nil {
		t.Fatal(err)
	}
	helmBin := helmBinary(t)
	// The test connects from 127.0.0.1: it stands in for the VPC CIDR Terraform passes.
	args := []string{"template", "gw", chartDir, "--kube-version", "1.32.0", "-f", chartDir + "/values-eks.yaml",
		"--set", "image.repository=r/gw", "--set", "image.digest=sha256:" + strings.Repeat("ab", 32),
		"--set", "service.nlb.scheme=internet-facing",
		"--set", "service.nlb.certificateArn=arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666",
		"--set", "config.trustedProxies={127.0.0.1/32}", "--set", "config.upstreamHttpUrl=" + upstream.URL,
		"--set", "config.upstreamWsUrl=off", "-f", keys}
	render := exec.Command(strings.TrimSpace(string(helmBin)), args...)
	var stderr bytes.Buffer
	render.Stderr = &stderr
	manifests, err := render.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	var env []string
	var configFile string
	for _, doc := range strings.Split(string(manifests), "\n---") {
		var o struct {
			Kind string            `json:"kind"`
			Data map[string]string `json:"data"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Env []struct {
								Name      string `json:"name"`
								Value     string `json:"value"`
								ValueFrom any    `json:"valueFrom"`
							} `json:"env"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		switch o.Kind {
		case "ConfigMap":
			if c, ok := o.Data["config.yaml"]; ok {
				configFile = c
			}
		case "Deployment":
			for _, e := range o.Spec.Template.Spec.Containers[0].Env {
				if e.ValueFrom == nil && e.Name != "CONFIG_FILE" {
					env = append(env, e.Name+"="+e.Value)
				}
			}
		}
	}
	if configFile == "" || len(env) == 0 {
		t.Fatalf("no configuration file or env rendered:\n%s", manifests)
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(configFile), 0o644); err != nil {
		t.Fatal(err)
	}
	public, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "-listen", public, "-admin-listen", admin, "-config", config)
	// Only the chart's settings: nothing from this process's environment.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LOG_LEVEL=error"}, env...)
	logs, exited := startProcess(t, cmd)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if status, _, err := get("http://" + admin + "/readyz"); err == nil && status == 200 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the gateway exited (%v) with the chart's settings %v:\n%s\nfile:\n%s", err, env, logs.String(), configFile)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never got ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	const call = `{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}`
	client := proxyV2("203.0.113.7")
	for _, c := range []struct {
		what   string
		header []byte
		method string
		path   string
		want   int
	}{
		{"no key, through the NLB: refused", client, "POST", "/", 401},
		{"a wrong key: refused", client, "POST", "/v3/not-a-key", 401},
		{"the key, through the NLB: served", client, "POST", "/v3/" + key, 200},
		{"kubelet readiness probe, no PROXY header", nil, "GET", "/readyz", 200},
		{"NLB health check, PROXY LOCAL", proxyV2(""), "GET", "/readyz", 200},
	} {
		body := ""
		if c.method == "POST" {
			body = call
		}
		status, resp := rawCall(t, public, c.header, c.method, c.path, body)
		if status != c.want {
			t.Errorf("%s: %d %s, want %d", c.what, status, resp, c.want)
		}
	}
}
