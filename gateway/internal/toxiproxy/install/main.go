// Command install builds the pinned toxiproxy server (package toxiproxy: one definition
// of its version) into a directory unless it is there already. `./task toxiproxy` runs it.
//
//	go run ./gateway/internal/toxiproxy/install [-bin .bin]   install .bin/toxiproxy-server
//	go run ./gateway/internal/toxiproxy/install version       print the pinned version
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/infura-gateway/infura-gateway/gateway/internal/toxiproxy"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println(toxiproxy.Version)
		return
	}
	bin := flag.String("bin", ".bin", "directory to install "+toxiproxy.BinName+" into")
	flag.Parse()
	if _, err := toxiproxy.Install(*bin, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		os.Exit(1)
	}
}
