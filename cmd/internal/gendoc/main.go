// Command gendoc writes the man pages and the bash and zsh completions of
// engarde-client and engarde-server from app.Help, the structure -h prints,
// so that the three cannot disagree with the program:
//
//	go run ./cmd/internal/gendoc -out DIR [-version V] [-date YYYY-MM-DD] [-sample engarde.yml.sample]
//
// writes DIR/man/engarde-client.1, DIR/man/engarde-server.1,
// DIR/man/engarde.yml.5 (from the sample configuration's comments),
// DIR/bash/engarde-client, DIR/bash/engarde-server, DIR/zsh/_engarde-client
// and DIR/zsh/_engarde-server. The files are build output (make doc, make
// deb, make release), not committed: app.Help is their one source.
//
// The date defaults to SOURCE_DATE_EPOCH's (reproducible builds), else
// today's.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/engarde-project/engarde/cmd/internal/app"
	"github.com/engarde-project/engarde/config"
)

func main() {
	out := flag.String("out", "", "the directory to write man/, bash/ and zsh/ into (required)")
	version := flag.String("version", app.Version, "the version the man pages name")
	date := flag.String("date", "", "the man pages' date, YYYY-MM-DD (default: SOURCE_DATE_EPOCH's, else today)")
	sample := flag.String("sample", "engarde.yml.sample", "the sample configuration engarde.yml(5) is made of")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *date == "" {
		*date = defaultDate()
	}
	if err := generate(*out, *version, *date, *sample); err != nil {
		fmt.Fprintf(os.Stderr, "gendoc: %v\n", err)
		os.Exit(1)
	}
}

// defaultDate is SOURCE_DATE_EPOCH's day in UTC
// (https://reproducible-builds.org/specs/source-date-epoch/), else today's.
func defaultDate() string {
	t := time.Now()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			t = time.Unix(n, 0)
		}
	}
	return t.UTC().Format("2006-01-02")
}

func generate(out, version, date, sample string) error {
	roles := []app.Usage{app.Help(config.RoleClient), app.Help(config.RoleServer)}
	files := map[string][]byte{}
	for _, u := range roles {
		files[filepath.Join("man", u.Prog+".1")] = manPage(u, version, date)
		files[filepath.Join("bash", u.Prog)] = []byte(bashCompletion(u))
		files[filepath.Join("zsh", "_"+u.Prog)] = []byte(zshCompletion(u))
	}
	data, err := os.ReadFile(sample)
	if err != nil {
		return err
	}
	files[filepath.Join("man", "engarde.yml.5")] = configPage(parseSample(data), version, date)
	for name, b := range files {
		p := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
