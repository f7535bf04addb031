// Package tools is the repository's development module: the pinned versions of the
// tools that build, lint and check it (go-task, helm, tflint, as tool directives) and
// the checks of the repository itself (dockerlint, repocheck). It lives under .ci/
// rather than at the top level because nothing in it is part of the gateway: the top
// level shows the design, and the gateway's own go.mod stays free of tool
// dependencies. Run a tool from the repository root with
//
//	go tool -modfile=.ci/tools/go.mod NAME
//
// (./task does this for go-task).
package tools
