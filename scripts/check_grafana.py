#!/usr/bin/env python3
"""Checks the Grafana files offline.

Provisioning (grafana/provisioning/**/*.yaml): Grafana expands environment variables in these files the
way Go's os.Expand does: `$NAME` or `${NAME}`, where everything between `${` and `}` is the name. A shell
default such as `${PROMETHEUS_URL:-http://prometheus:9090}` therefore looks up a variable literally named
`PROMETHEUS_URL:-http://prometheus:9090`, which is never set, and the URL comes out empty. This check
expands every value the same way and fails on any name that is not a plain identifier.

Dashboards (grafana/*.json): unique uids, `"id": null`, every datasource reference is a datasource
variable the dashboard defines, the datasources provisioned carry the types the variables ask for, and in
a dashboard with a `namespace` variable every metric selector filters on it.
"""

import glob
import json
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def os_expand_names(s):
    """The variable names Go's os.Expand would look up in `s`."""
    names, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            if s[i + 1] == "{":
                end = s.find("}", i + 2)
                if end < 0:
                    names.append(s[i + 2:])  # os.Expand: a bad syntax, the rest is consumed
                    break
                names.append(s[i + 2:end])
                i = end + 1
                continue
            m = re.match(r"[A-Za-z0-9_]+", s[i + 1:])
            if m:
                names.append(m.group(0))
                i += 1 + len(m.group(0))
                continue
        i += 1
    return names


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def main():
    errors = []
    ds_types = set()
    prov = sorted(glob.glob(os.path.join(ROOT, "grafana", "provisioning", "**", "*.yaml"), recursive=True))
    if not prov:
        errors.append("no provisioning files")
    for path in prov:
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            doc = yaml.safe_load(f)
        for s in strings(doc):
            for name in os_expand_names(s):
                if not IDENT.match(name):
                    errors.append(f"{rel}: {s!r}: Grafana would look up a variable named {name!r} "
                                  "(only $VAR and ${VAR} are expanded; no :- defaults)")
        for ds in (doc or {}).get("datasources") or []:
            ds_types.add(ds.get("type"))
            if not ds.get("url"):
                errors.append(f"{rel}: datasource {ds.get('name')!r} has no url")

    uids = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "grafana", "*.json"))):
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            d = json.load(f)
        if d.get("id") is not None:
            errors.append(f"{rel}: id must be null")
        if d.get("uid") in uids:
            errors.append(f"{rel}: uid {d.get('uid')} also used by {uids[d['uid']]}")
        uids[d.get("uid")] = rel
        variables = {v["name"]: v.get("query") for v in d.get("templating", {}).get("list", [])
                     if v.get("type") == "datasource"}
        all_vars = {v["name"] for v in d.get("templating", {}).get("list", [])}
        for var, wanted in variables.items():
            if wanted not in ds_types:
                errors.append(f"{rel}: variable {var} wants a {wanted} datasource; none is provisioned")

        def check_ds(ds, where):
            if not isinstance(ds, dict):
                errors.append(f"{rel}: {where}: datasource {ds!r} is not a reference")
                return
            m = re.fullmatch(r"\$\{(\w+)\}", ds.get("uid", ""))
            if not m or m.group(1) not in variables:
                errors.append(f"{rel}: {where}: datasource uid {ds.get('uid')!r} is not one of {sorted(variables)}")
            elif variables[m.group(1)] != ds.get("type"):
                errors.append(f"{rel}: {where}: type {ds.get('type')} but ${m.group(1)} is {variables[m.group(1)]}")

        def walk(panels):
            for p in panels:
                walk(p.get("panels") or [])
                if p.get("type") == "row":
                    continue
                check_ds(p.get("datasource"), f"panel {p.get('title')!r}")
                for t in p.get("targets") or []:
                    check_ds(t.get("datasource"), f"panel {p.get('title')!r} target {t.get('refId')}")
                    # A dashboard with a namespace variable shows one deployment: every metric selector
                    # must filter on it, or dev and prod would be summed together.
                    expr = t.get("expr") or ""
                    if "namespace" in all_vars:
                        for sel in re.findall(r"\b(tradewind_\w+|process_\w+)\{([^}]*)\}", expr):
                            if 'namespace=~"$namespace"' not in sel[1]:
                                errors.append(f"{rel}: panel {p.get('title')!r}: {sel[0]} not filtered by $namespace")

        walk(d.get("panels") or [])
        print(f"{'ok  ' if not errors else '... '} {rel}: uid {d.get('uid')}, datasource variables {sorted(variables)}")

    for e in errors:
        print(f"FAIL {e}")
    print(f"grafana: {len(prov)} provisioning files, {len(uids)} dashboards, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
