package main

import (
	"fmt"
	"regexp"
	"strings"
)

// key is one configuration key of the sample file with the comment above
// it.
type key struct {
	// Path is the key's dotted path: client.webManager.listenAddr.
	Path string
	// Value is the sample's value, empty for a section.
	Value string
	// Doc is the comment, one entry per line without "# "; a line that
	// starts with a space is part of a literal example.
	Doc []string
	// Commented says the sample shows the key only in a comment.
	Commented bool
	// Example holds the entries of a mapping whose entries the sample does
	// not document one by one ("eth0: Fiber" under interfaceLabels): they
	// are values, shown as an example, not keys.
	Example []string
}

// sample is what parseSample finds in the sample configuration.
type sample struct {
	// Intro is the file's first comment, attached to no key.
	Intro []string
	Keys  []key
}

var (
	keyLine = regexp.MustCompile(`^( *)([A-Za-z][A-Za-z0-9]*):(?: (.*))?$`)
	// A key shown only in a comment: a camelCase name and a value that
	// looks like YAML's (quoted, a list, a number, a boolean), so that
	// prose such as "# strictly: a misspelt key..." is not taken for one.
	commentedKey  = regexp.MustCompile(`^( *)# ([a-z][A-Za-z0-9]*): ("[^"]*"|\[.*\]|[0-9][0-9a-fA-Fx]*|true|false)$`)
	commentLine   = regexp.MustCompile(`^ *#(?: (.*))?$`)
	listItem      = regexp.MustCompile(`^ *- `)
	sampleIndent  = 2
	sampleDivider = "---"
)

// parseSample reads the keys of the sample configuration and the comment
// written above each: the sample is where every key is documented (a test
// in config checks it against the defaults), so the man page is made of it
// rather than of a second description.
func parseSample(data []byte) sample {
	var s sample
	var doc []string
	var stack []string
	introDone := false
	// listIndent is the indentation of the list being read, -1 outside
	// one; keyIndent that of the key the list belongs to.
	listIndent, keyIndent := -1, 0
	add := func(indent int, name, value string, commented bool) {
		depth := min(indent/sampleIndent, len(stack))
		stack = append(stack[:depth], name)
		s.Keys = append(s.Keys, key{Path: strings.Join(stack, "."), Value: value, Doc: doc, Commented: commented})
		if commented {
			stack = stack[:depth] // a commented key has no children
		} else {
			keyIndent = indent
		}
		doc = nil
		introDone = true
	}
	example := func(line string) {
		if n := len(s.Keys); n > 0 {
			s.Keys[n-1].Example = append(s.Keys[n-1].Example, strings.TrimPrefix(line, strings.Repeat(" ", keyIndent+sampleIndent)))
		}
		doc = nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, " \r")
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if listIndent >= 0 && line != "" && !commentLine.MatchString(line) {
			if indent > listIndent || (indent == listIndent && listItem.MatchString(line)) {
				example(line)
				continue
			}
			listIndent = -1
		}
		switch {
		case line == sampleDivider:
		case line == "":
			if !introDone && doc != nil {
				s.Intro = doc
				introDone = true
			}
			doc = nil
		case commentedKey.MatchString(line):
			m := commentedKey.FindStringSubmatch(line)
			add(len(m[1]), m[2], m[3], true)
		case commentLine.MatchString(line):
			doc = append(doc, commentLine.FindStringSubmatch(line)[1])
		case listItem.MatchString(line):
			listIndent = indent
			example(line)
		case keyLine.MatchString(line):
			m := keyLine.FindStringSubmatch(line)
			add(len(m[1]), m[2], m[3], false)
		default: // a continuation of the value above: not a key
			doc = nil
		}
	}
	s.Keys = foldExamples(s.Keys)
	return s
}

// foldExamples turns the children of a key into its example when none of
// them has a comment or children of its own: the names of a map such as
// interfaceLabels, or a section documented elsewhere ("as in the client
// section").
func foldExamples(keys []key) []key {
	var out []key
	for i := 0; i < len(keys); i++ {
		k := keys[i]
		j := i + 1
		plain := true
		for ; j < len(keys) && strings.HasPrefix(keys[j].Path, k.Path+"."); j++ {
			c := keys[j]
			if len(c.Doc) > 0 || c.Commented || strings.Contains(c.Path[len(k.Path)+1:], ".") {
				plain = false
			}
		}
		if j > i+1 && plain && strings.Contains(k.Path, ".") {
			for _, c := range keys[i+1 : j] {
				k.Example = append(k.Example, c.Path[len(k.Path)+1:]+": "+c.Value)
				k.Example = append(k.Example, c.Example...)
			}
			i = j - 1
		}
		out = append(out, k)
	}
	return out
}

// paragraphs renders comment lines as roff: prose filled, lines indented
// beyond the comment's own margin kept as an example.
func paragraphs(b *strings.Builder, lines []string) {
	literal := false
	for _, l := range lines {
		isLit := strings.HasPrefix(l, " ")
		if isLit != literal {
			if isLit {
				b.WriteString(".EX\n")
			} else {
				b.WriteString(".EE\n")
			}
			literal = isLit
		}
		if l == "" && !literal {
			b.WriteString(".PP\n")
			continue
		}
		b.WriteString(roff(l) + "\n")
	}
	if literal {
		b.WriteString(".EE\n")
	}
}

// configPage is engarde.yml(5): every key of the sample, by section.
func configPage(s sample, version, date string) []byte {
	var b strings.Builder
	b.WriteString(".\\\" Generated by cmd/internal/gendoc from engarde.yml.sample; do not edit.\n")
	fmt.Fprintf(&b, ".TH ENGARDE.YML 5 \"%s\" \"engarde %s\" \"engarde manual\"\n.nh\n", date, version)
	b.WriteString(".SH NAME\nengarde.yml \\- the configuration file of engarde\\-client and engarde\\-server\n")
	b.WriteString(".SH SYNOPSIS\n.B engarde\\-client\n.I /etc/engarde/NAME.yml\n.br\n.B engarde\\-server\n.I /etc/engarde/NAME.yml\n")
	b.WriteString(".SH DESCRIPTION\n")
	paragraphs(&b, s.Intro)
	b.WriteString(".PP\nEach key below is written with its path from the top of the file; the value after it is the sample's.\n")
	for _, k := range s.Keys {
		if !strings.Contains(k.Path, ".") {
			fmt.Fprintf(&b, ".SH %s\n", strings.ToUpper(roff(k.Path)))
			paragraphs(&b, k.Doc)
			continue
		}
		fmt.Fprintf(&b, ".TP\n\\fB%s\\fR", roff(k.Path))
		if k.Value != "" {
			fmt.Fprintf(&b, ": %s", roff(k.Value))
		}
		b.WriteString("\n")
		if k.Commented {
			b.WriteString("(not set in the sample)\n.br\n")
		}
		paragraphs(&b, k.Doc)
		if len(k.Example) > 0 {
			b.WriteString(".IP\n.EX\n")
			for _, e := range k.Example {
				b.WriteString(roff(e) + "\n")
			}
			b.WriteString(".EE\n")
		}
	}
	b.WriteString(".SH SEE ALSO\n.BR engarde\\-client (1),\n.BR engarde\\-server (1)\n")
	return []byte(b.String())
}
