// Command gosystemd is the reference side of keelson-unitfile's differential
// test: it parses a unit from stdin with go-systemd's own `unit` package (the
// parser fleet vendors) and prints what fleet would store and hash.
//
// Output on success: "OK <sha1 hex of the serialized form>\n" followed by the
// serialized bytes exactly as unit.Serialize wrote them. On a parse error:
// "ERR <error text>\n". Exit status is 0 in both cases; anything else is a
// harness failure.
//
// Built by tests/differential.rs with
// GO111MODULE=off GOPATH=/usr/share/gocode go build.
package main

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"io"
	"os"

	"github.com/coreos/go-systemd/unit"
)

func main() {
	opts, err := unit.Deserialize(os.Stdin)
	if err != nil {
		fmt.Printf("ERR %s\n", err)
		return
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, unit.Serialize(opts)); err != nil {
		fmt.Fprintf(os.Stderr, "serialize: %s\n", err)
		os.Exit(2)
	}
	fmt.Printf("OK %x\n", sha1.Sum(out.Bytes()))
	os.Stdout.Write(out.Bytes())
}
