#!/usr/bin/env python3
"""Every pathsentry_* metric name that the alert rules, their tests and the Grafana dashboard
name must be exported by a program: the names in the programs' real /metrics text (files given
with --exported). A histogram's _bucket/_sum/_count series count as its name's.

--conditional NAME=SOURCE: a series a program exports only in some states (an empty family is
not exported at all, e.g. pathsentry_healthcheck_eta_seconds exists only while a health check
degrades, which the loopback run does not cause): NAME counts as exported when SOURCE registers
it (.Name("NAME")); its export is then proven by that program's unit tests."""
import re
import sys

NAME = re.compile(r"pathsentry_[a-z_]+")


def exported(paths):
    names, histograms = set(), set()
    for p in paths:
        for line in open(p, encoding="utf-8"):
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                names.add(m.group(1))
                if m.group(2) == "histogram":
                    histograms.add(m.group(1))
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, 1)[0])
    return names, histograms


def known(name, names, histograms):
    if name in names:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return True
    return False


def declared(conditionals):
    names = set()
    for c in conditionals:
        name, _, source = c.partition("=")
        text = open(source, encoding="utf-8").read()
        if f'.Name("{name}")' not in text:
            print(f"--conditional {name}: {source} does not register it")
            sys.exit(1)
        names.add(name)
    return names


def main(argv):
    conditionals = []
    while "--conditional" in argv:
        i = argv.index("--conditional")
        conditionals.append(argv[i + 1])
        del argv[i : i + 2]
    sep = argv.index("--exported")
    users, sources = argv[1:sep], argv[sep + 1 :]
    names, histograms = exported(sources)
    names |= declared(conditionals)
    missing, used = [], set()
    for path in users:
        text = open(path, encoding="utf-8").read()
        for name in sorted(set(NAME.findall(text))):
            used.add(name)
            if not known(name, names, histograms):
                missing.append(f"{path}: {name}")
    print(f"{len(used)} metric names used in {len(users)} files, "
          f"{len([n for n in names if n.startswith('pathsentry_')])} exported")
    if missing:
        print("not exported by any program:\n  " + "\n  ".join(missing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
