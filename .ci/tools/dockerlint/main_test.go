package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// root is the repository root, seen from this package's directory (.ci/tools/dockerlint).
const root = "../../.."

func read(t *testing.T, path string) []byte {
	t.Helper()
	dt, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// The project's Dockerfile and .dockerignore must be clean.
func TestProjectDockerfile(t *testing.T) {
	dt := read(t, root+"/Dockerfile")
	lint, err := Lint(context.Background(), "Dockerfile", dt)
	if err != nil {
		t.Fatal(err)
	}
	if len(lint) > 0 {
		t.Errorf("BuildKit lint: %v", lint)
	}
	if p := Policy(dt); len(p) > 0 {
		t.Errorf("policy: %v", p)
	}
	if p := CheckDockerignore(read(t, root+"/.dockerignore")); len(p) > 0 {
		t.Errorf(".dockerignore: %v", p)
	}
	cmd, err := BuildCommand(dt)
	if err != nil || !strings.HasPrefix(cmd, "CGO_ENABLED=0 ") {
		t.Errorf("build command %q, %v", cmd, err)
	}
	if p := CheckGoVersion(dt, read(t, root+"/go.mod")); len(p) > 0 {
		t.Errorf("Go version: %v", p)
	}
}

// A Dockerfile whose Go image drifts from go.mod's go line is rejected.
func TestGoVersionDriftIsRejected(t *testing.T) {
	mod := []byte("module m\n\ngo 1.26.8\n")
	for _, tc := range []struct{ dockerfile, want string }{
		{"ARG GO_VERSION=1.26.7\nFROM golang:${GO_VERSION} AS build\n", "ARG GO_VERSION=1.26.7, but go.mod says go 1.26.8"},
		{"FROM golang:1.26.8 AS build\n", "no ARG GO_VERSION"},
		{"ARG GO_VERSION=1.26.8\nFROM golang:1.26 AS build\n", "no stage is FROM an image tagged ${GO_VERSION}"},
	} {
		if p := CheckGoVersion([]byte(tc.dockerfile), mod); !contains(p, tc.want) {
			t.Errorf("%q: want a finding %q, got %v", tc.dockerfile, tc.want, p)
		}
	}
	if p := CheckGoVersion([]byte("ARG GO_VERSION=1.26.8\nFROM golang:${GO_VERSION} AS build\n"), mod); len(p) > 0 {
		t.Errorf("matching versions rejected: %v", p)
	}
}

// The checks must catch what they claim to: BuildKit rules and policy rules.
func TestBadDockerfileIsRejected(t *testing.T) {
	dt := read(t, "testdata/bad.Dockerfile")
	lint, err := Lint(context.Background(), "bad.Dockerfile", dt)
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{"FromAsCasing", "SecretsUsedInArgOrEnv", "JSONArgsRecommended"} {
		if !contains(lint, rule) {
			t.Errorf("BuildKit lint did not report %s: %v", rule, lint)
		}
	}
	p := Policy(dt)
	for _, want := range []string{"lacks CGO_ENABLED=0", "lacks -trimpath", "cache mount for /go/pkg/mod",
		"ARG INFURA_PROJECT_SECRET", "runtime base", `USER "nonroot"`, "ENTRYPOINT must be exec form",
		"no HEALTHCHECK", "must not RUN"} {
		if !contains(p, want) {
			t.Errorf("policy did not report %q: %v", want, p)
		}
	}
}

func TestBrokenDockerfileIsAnError(t *testing.T) {
	lint, err := Lint(context.Background(), "broken.Dockerfile", read(t, "testdata/broken.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !contains(lint, "build error") {
		t.Errorf("no build error for an unknown instruction: %v", lint)
	}
}

// The image's health check is liveness: a probe of /readyz would mark a draining or
// starting gateway unhealthy and get it restarted.
func TestReadinessHealthcheckIsRejected(t *testing.T) {
	base := "FROM golang:1.26.8 AS build\nRUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w -X main.version=$VERSION\" -o /x .\n" +
		"FROM gcr.io/distroless/static-debian12:nonroot\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n"
	for hc, want := range map[string]bool{
		`HEALTHCHECK CMD ["/x", "healthcheck"]`:                                         false,
		`HEALTHCHECK CMD ["/x", "healthcheck", "-url", "http://127.0.0.1:8000/readyz"]`: false,
		`HEALTHCHECK CMD ["/x", "healthcheck", "-url", "http://127.0.0.1:9090/health"]`: true,
	} {
		p := Policy([]byte(base + hc + "\n"))
		if ok := !contains(p, "HEALTHCHECK"); ok != want {
			t.Errorf("%s: accepted=%v, want %v (%v)", hc, ok, want, p)
		}
	}
}

func TestBadDockerignoreIsRejected(t *testing.T) {
	p := CheckDockerignore(read(t, "testdata/bad.dockerignore"))
	for _, want := range []string{".envrc", "terraform.tfstate", ".bin/infura-gateway"} {
		if !contains(p, want) {
			t.Errorf("no finding for %s: %v", want, p)
		}
	}
}

// The extracted build command, run outside Docker, must produce a binary that
// passes CheckBinary; a plain `go build` must not.
func TestCheckBinary(t *testing.T) {
	cmd, err := BuildCommand(read(t, root+"/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module stub\ngo 1.26\n",
		"main.go": "package main\n\nvar version = \"dev\"\n\nfunc main() { println(version) }\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(env []string, args ...string) {
		t.Helper()
		c := exec.Command(args[0], args[1:]...)
		c.Dir = dir
		c.Env = append(os.Environ(), env...)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run([]string{"TARGETOS=" + runtime.GOOS, "TARGETARCH=" + runtime.GOARCH, "VERSION=v0.0.0-checkbinary"}, "sh", "-c", cmd)
	if p := CheckBinary(filepath.Join(dir, ".bin/infura-gateway"), "v0.0.0-checkbinary"); len(p) > 0 {
		t.Errorf("release build rejected: %v", p)
	}
	run(nil, "go", "build", "-o", "plain", ".")
	p := CheckBinary(filepath.Join(dir, "plain"), "v0.0.0-checkbinary")
	for _, want := range []string{"-trimpath", "-ldflags -s", "-ldflags -w", "not found"} {
		if !contains(p, want) {
			t.Errorf("plain build: no finding for %q: %v", want, p)
		}
	}
}
