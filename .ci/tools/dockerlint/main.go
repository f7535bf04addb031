// Command dockerlint checks the gateway's Dockerfile offline: BuildKit's own
// Dockerfile linter (the rules `docker build --check` runs) plus the project's
// image policy, and it is the one place that knows the release build command.
// The image's Go version is the go line of go.mod: the Dockerfile's GO_VERSION
// default must equal it.
//
//	dockerlint [-f Dockerfile] [-dockerignore .dockerignore] [-gomod go.mod]   lint + policy; exit 1 on findings
//	dockerlint -print-build-cmd                                print the build stage's `go build` RUN line
//	dockerlint -check-binary .bin/infura-gateway -version V    assert the binary was built with those flags
package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
)

func main() {
	file := flag.String("f", "Dockerfile", "Dockerfile to check")
	ignore := flag.String("dockerignore", ".dockerignore", ".dockerignore to check (empty: skip)")
	printCmd := flag.Bool("print-build-cmd", false, "print the build stage's go build command and exit")
	binary := flag.String("check-binary", "", "verify a binary's embedded build settings match the Dockerfile's go build flags")
	version := flag.String("version", "", "with -check-binary: the VERSION the binary was built with")
	gomod := flag.String("gomod", "go.mod", "go.mod whose go line the Dockerfile's GO_VERSION default must equal (empty: skip)")
	flag.Parse()

	dt, err := os.ReadFile(*file)
	if err != nil {
		fatal(err)
	}
	switch {
	case *printCmd:
		cmd, err := BuildCommand(dt)
		if err != nil {
			fatal(err)
		}
		fmt.Println(cmd)
	case *binary != "":
		if problems := CheckBinary(*binary, *version); len(problems) > 0 {
			report(*binary, problems)
		}
		fmt.Printf("%s: built with CGO_ENABLED=0 -trimpath -ldflags \"-s -w -X main.version=...\"\n", *binary)
	default:
		problems, err := Lint(context.Background(), *file, dt)
		if err != nil {
			fatal(err)
		}
		problems = append(problems, Policy(dt)...)
		if *ignore != "" {
			ig, err := os.ReadFile(*ignore)
			if err != nil {
				fatal(err)
			}
			problems = append(problems, CheckDockerignore(ig)...)
		}
		if *gomod != "" {
			mod, err := os.ReadFile(*gomod)
			if err != nil {
				fatal(err)
			}
			problems = append(problems, CheckGoVersion(dt, mod)...)
		}
		if len(problems) > 0 {
			report(*file, problems)
		}
		fmt.Printf("%s: BuildKit lint and image policy OK\n", *file)
	}
}

func report(what string, problems []string) {
	for _, p := range problems {
		fmt.Fprintf(os.Stderr, "%s: %s\n", what, p)
	}
	os.Exit(1)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "dockerlint:", err)
	os.Exit(2)
}

// offlineResolver answers every image lookup with an empty Linux config, so
// the linter never reaches a registry. The rules only need the config's
// existence (and its env/user for a few checks), not the real image.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	})
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes(cfg), cfg, nil
}

// Lint runs BuildKit's Dockerfile linter over every stage and returns its
// warnings and any build error (bad syntax, unknown flags, undefined stages).
func Lint(ctx context.Context, name string, dt []byte) ([]string, error) {
	// The source map needs a marshalled definition; a local source stands in
	// for the build context the frontend would normally read it from.
	src := llb.Local("dockerfile")
	def, err := src.Marshal(ctx)
	if err != nil {
		return nil, err
	}
	smap := llb.NewSourceMap(&src, name, "Dockerfile", dt)
	smap.Definition = def
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{BuildArgs: map[string]string{}},
		SourceMap:    smap,
		MetaResolver: offlineResolver{},
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		out = append(out, fmt.Sprintf("line %d: %s: %s", line, w.RuleName, w.Detail))
	}
	if res.Error != nil {
		out = append(out, "build error: "+res.Error.Message)
	}
	return out, nil
}

func parse(dt []byte) ([]instructions.Stage, error) {
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, err
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	return stages, err
}

// buildRun finds the single RUN instruction of the build stages that invokes
// `go build`.
func buildRun(stages []instructions.Stage) (*instructions.RunCommand, error) {
	var found []*instructions.RunCommand
	for _, s := range stages {
		for _, c := range s.Commands {
			if r, ok := c.(*instructions.RunCommand); ok && strings.Contains(strings.Join(r.CmdLine, " "), "go build") {
				found = append(found, r)
			}
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want exactly one RUN with `go build`, found %d", len(found))
	}
	return found[0], nil
}

// BuildCommand returns the shell command of the build stage's `go build` RUN
// (mount flags are RUN options, not part of the command).
func BuildCommand(dt []byte) (string, error) {
	stages, err := parse(dt)
	if err != nil {
		return "", err
	}
	r, err := buildRun(stages)
	if err != nil {
		return "", err
	}
	if !r.PrependShell || len(r.CmdLine) != 1 {
		return "", fmt.Errorf("the go build RUN must be shell form (it relies on $VERSION/$TARGETOS expansion)")
	}
	return r.CmdLine[0], nil
}

var (
	numericUser = regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`)
	secretName  = regexp.MustCompile(`(?i)(secret|passw|token|api_?key|private_?key|credential|project_id)`)
)

// Policy enforces the image rules BuildKit's linter does not know about.
func Policy(dt []byte) []string {
	stages, err := parse(dt)
	if err != nil {
		return []string{"parse: " + err.Error()}
	}
	if len(stages) < 2 {
		return []string{"want a multi-stage build (build stage + runtime stage)"}
	}
	var p []string

	// Build stage: the release flags and module/build cache mounts.
	if r, err := buildRun(stages); err != nil {
		p = append(p, err.Error())
	} else {
		cmd := strings.Join(r.CmdLine, " ")
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=`} {
			if !strings.Contains(cmd, want) {
				p = append(p, fmt.Sprintf("go build RUN lacks %s", want))
			}
		}
		for _, target := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
			if !strings.Contains(r.String(), "--mount=type=cache,target="+target) {
				p = append(p, "go build RUN lacks a cache mount for "+target)
			}
		}
	}

	// No credentials may be passed as build args or baked into ENV layers.
	for _, s := range stages {
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.ArgCommand:
				for _, a := range c.Args {
					if secretName.MatchString(a.Key) {
						p = append(p, fmt.Sprintf("ARG %s looks like a secret: use RUN --mount=type=secret or runtime env", a.Key))
					}
				}
			case *instructions.EnvCommand:
				for _, e := range c.Env {
					if secretName.MatchString(e.Key) {
						p = append(p, fmt.Sprintf("ENV %s looks like a secret: inject it at runtime", e.Key))
					}
				}
			}
		}
	}

	// Runtime stage.
	rt := stages[len(stages)-1]
	if !strings.HasPrefix(rt.BaseName, "gcr.io/distroless/static") || !strings.Contains(rt.BaseName, ":nonroot") {
		p = append(p, fmt.Sprintf("runtime base %q: want gcr.io/distroless/static*:nonroot", rt.BaseName))
	}
	var user, entry, health bool
	for _, c := range rt.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = numericUser.MatchString(c.User)
			if !user {
				p = append(p, fmt.Sprintf("USER %q: want numeric non-root uid:gid (e.g. 65532:65532)", c.User))
			}
		case *instructions.EntrypointCommand:
			entry = !c.PrependShell
			if !entry {
				p = append(p, "ENTRYPOINT must be exec form (JSON array): distroless has no shell")
			}
		case *instructions.HealthCheckCommand:
			t := c.Health.Test
			health = len(t) >= 3 && t[0] == "CMD" && slices.Contains(t[2:], "healthcheck")
			if !health {
				p = append(p, fmt.Sprintf("HEALTHCHECK %v: want exec form CMD running the binary's healthcheck subcommand", t))
			} else if i := slices.Index(t, "-url"); i < 0 || i+1 >= len(t) || !strings.HasSuffix(t[i+1], "/health") {
				// Liveness, not readiness: a draining or starting gateway is alive, and
				// an orchestrator restarts containers whose health check fails.
				p = append(p, fmt.Sprintf("HEALTHCHECK %v: want -url ending in /health (liveness), never /readyz", t))
			}
		case *instructions.RunCommand:
			p = append(p, "runtime stage must not RUN anything (distroless has no shell)")
		}
	}
	if !user && !hasProblem(p, "USER") {
		p = append(p, "runtime stage has no USER")
	}
	if !entry && !hasProblem(p, "ENTRYPOINT") {
		p = append(p, "runtime stage has no ENTRYPOINT")
	}
	if !health && !hasProblem(p, "HEALTHCHECK") {
		p = append(p, "runtime stage has no HEALTHCHECK")
	}
	return p
}

func hasProblem(p []string, prefix string) bool {
	for _, s := range p {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

var goLine = regexp.MustCompile(`(?m)^go ([0-9][^\s]*)\s*$`)

// GoLine returns the version on a go.mod's go line.
func GoLine(mod []byte) (string, error) {
	m := goLine.FindSubmatch(mod)
	if m == nil {
		return "", fmt.Errorf("go.mod has no go line")
	}
	return string(m[1]), nil
}

// CheckGoVersion asserts the Dockerfile builds with the Go release go.mod names:
// the default of ARG GO_VERSION equals the go line, and a build stage uses it.
func CheckGoVersion(dockerfile, mod []byte) []string {
	want, err := GoLine(mod)
	if err != nil {
		return []string{err.Error()}
	}
	ast, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return []string{"parse: " + err.Error()}
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return []string{"parse: " + err.Error()}
	}
	var p []string
	found := false
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Key != "GO_VERSION" {
				continue
			}
			found = true
			if kv.Value == nil || *kv.Value != want {
				got := "<none>"
				if kv.Value != nil {
					got = *kv.Value
				}
				p = append(p, fmt.Sprintf("ARG GO_VERSION=%s, but go.mod says go %s: change one to match the other", got, want))
			}
		}
	}
	if !found {
		return []string{"no ARG GO_VERSION before the first FROM: the Go image must follow go.mod's go line"}
	}
	used := false
	for _, s := range stages {
		if strings.Contains(s.BaseName, "${GO_VERSION}") || strings.Contains(s.BaseName, "$GO_VERSION") {
			used = true
		}
	}
	if !used {
		p = append(p, "no stage is FROM an image tagged ${GO_VERSION}")
	}
	return p
}

// CheckDockerignore asserts the build context keeps credentials and noise out
// while still containing the Go sources.
func CheckDockerignore(dt []byte) []string {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(dt))
	if err != nil {
		return []string{"parse .dockerignore: " + err.Error()}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return []string{"parse .dockerignore: " + err.Error()}
	}
	var p []string
	for _, path := range []string{".git/config", ".envrc", ".env", ".bin/infura-gateway", "terraform/terraform.tfstate",
		"terraform/prod.tfvars", "k6/node_modules/esbuild/package.json", "helm/infura-gateway/values.yaml",
		"gateway/e2e/node_modules/ws/package.json", "helm/tests/go.mod", ".ci/tools/go.mod"} {
		if ok, _ := pm.MatchesOrParentMatches(path); !ok {
			p = append(p, fmt.Sprintf(".dockerignore lets %s into the build context", path))
		}
	}
	for _, path := range []string{"go.mod", "go.sum", "main.go", "gateway/server.go", "upstream/ws/mux.go"} {
		if ok, _ := pm.MatchesOrParentMatches(path); ok {
			p = append(p, fmt.Sprintf(".dockerignore excludes %s, which the build needs", path))
		}
	}
	return p
}

// CheckBinary asserts a binary carries the Dockerfile's release flags. Go
// records CGO_ENABLED and -trimpath in the binary but drops -ldflags under
// -trimpath, so -s -w is read off the ELF (no symbol table, no DWARF) and the
// -X main.version value is looked up in the binary's data.
func CheckBinary(path, version string) []string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	var p []string
	if settings["CGO_ENABLED"] != "0" {
		p = append(p, fmt.Sprintf("CGO_ENABLED=%q, want 0 (static binary for distroless/static)", settings["CGO_ENABLED"]))
	}
	if settings["-trimpath"] != "true" {
		p = append(p, "not built with -trimpath")
	}
	f, err := elf.Open(path)
	if err != nil {
		return append(p, err.Error())
	}
	defer f.Close()
	if f.Section(".symtab") != nil {
		p = append(p, "symbol table present: not built with -ldflags -s")
	}
	if f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil {
		p = append(p, "DWARF present: not built with -ldflags -w")
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			p = append(p, "dynamically linked (has an ELF interpreter)")
		}
	}
	if version != "" {
		dt, err := os.ReadFile(path)
		if err != nil {
			return append(p, err.Error())
		}
		if !bytes.Contains(dt, []byte(version)) {
			p = append(p, fmt.Sprintf("version %q not found: -X main.version not applied", version))
		}
	}
	return p
}
