#!/usr/bin/env python3
"""Check tableau/*.tds and tableau/*.twb against the MySQL DDL in schemas/mysql (stdlib only).

For every data source in the files: the connection is a live MySQL connection with server, port, dbname and
username and NO password; it reads a view (not a table) defined in schemas/mysql; and every column the file
references (metadata records, column declarations, column instances, shelves, filters, sorts) exists in that
view's select list. Static by default (parses the SQL files); with --live it also applies the DDL to a
throwaway database on the local MariaDB (via the `mariadb` CLI) and compares against information_schema.

    python3 scripts/check_tableau.py [--live] [--schemas schemas/mysql] [files...]

Exit 0 when everything checks out, 1 with one line per problem otherwise. Not part of CI (no Python tests
there); run it after changing the views or the workbook.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def strip_sql_comments(sql):
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql)


def split_top_level(s, sep=","):
    """Split on `sep` outside parentheses and quotes."""
    out, depth, cur, quote = [], 0, [], None
    for ch in s:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


def parse_ddl(schema_dir):
    """Return (tables: name -> [columns], views: name -> (columns, [source tables]))."""
    tables, views = {}, {}
    for path in sorted(glob.glob(os.path.join(schema_dir, "*.sql"))):
        sql = strip_sql_comments(open(path, encoding="utf-8").read())
        for stmt in split_top_level(sql, ";"):
            m = re.match(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?\s*\((.*)\)[^)]*$", stmt, re.S | re.I)
            if m:
                cols = []
                for item in split_top_level(m.group(2)):
                    first = item.split()[0].strip("`")
                    if first.upper() in ("PRIMARY", "KEY", "UNIQUE", "INDEX", "CONSTRAINT", "FOREIGN", "CHECK", "FULLTEXT"):
                        continue
                    cols.append(first)
                tables[m.group(1)] = cols
                continue
            m = re.match(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:\w+\s*=\s*\w+\s+)*VIEW\s+`?(\w+)`?\s+AS\s+SELECT\s+(.*?)\s+FROM\s+(.*)$",
                         stmt, re.S | re.I)
            if m:
                cols = []
                for item in split_top_level(m.group(2)):
                    a = re.search(r"\bAS\s+`?(\w+)`?\s*$", item, re.I)
                    cols.append(a.group(1) if a else item.split(".")[-1].strip("` "))
                sources = re.findall(r"(?:FROM|JOIN)\s+`?(\w+)`?", "FROM " + m.group(3), re.I)
                views[m.group(1)] = (cols, sources, m.group(2))
    return tables, views


def live_columns(schema_dir, names):
    """Apply the DDL to a throwaway database and read the columns of `names` from information_schema."""
    db = f"tw_tableau_check_{os.getpid()}"
    base = ["mariadb", "-uroot", "-h127.0.0.1", "--protocol=tcp", "--batch", "--skip-column-names"]
    subprocess.run(base + ["-e", f"CREATE DATABASE `{db}`"], check=True)
    try:
        for path in sorted(glob.glob(os.path.join(schema_dir, "*.sql"))):
            with open(path, "rb") as f:
                subprocess.run(base + [db], stdin=f, check=True)
        out = subprocess.run(base + ["-e", "SELECT table_name, column_name FROM information_schema.columns "
                                     f"WHERE table_schema = '{db}' ORDER BY table_name, ordinal_position"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run(base + ["-e", f"DROP DATABASE IF EXISTS `{db}`"], check=False)
    cols = {}
    for line in out.splitlines():
        t, c = line.split("\t")
        cols.setdefault(t, []).append(c)
    return {n: cols.get(n, []) for n in names}


FIELD_RE = re.compile(r"\[([^\[\]]+)\]\.\[([^\[\]]+)\]")


def field_to_column(field):
    """`none:base:nk` / `sum:volume:qk` / `base` -> `base`."""
    parts = field.split(":")
    return parts[1] if len(parts) == 3 else field


def check_file(path, tables, views, problems):
    tree = ET.parse(path)
    root = tree.getroot()
    datasources = [root] if root.tag == "datasource" else root.findall("./datasources/datasource")
    if not datasources:
        problems.append(f"{path}: no datasource")
    ds_views = {}
    for ds in datasources:
        dsname = ds.get("name") or ds.get("formatted-name") or "?"
        for conn in ds.iter("connection"):
            if conn.get("class") == "federated":
                continue
            for attr in conn.attrib:
                if "password" in attr.lower():
                    problems.append(f"{path}: {dsname}: connection stores a password attribute ({attr})")
            if conn.get("class") != "mysql":
                problems.append(f"{path}: {dsname}: connection class {conn.get('class')!r}, expected 'mysql'")
            for attr in ("server", "port", "dbname", "username"):
                if not conn.get(attr):
                    problems.append(f"{path}: {dsname}: connection lacks {attr}")
            if conn.get("dbname") not in (None, "tradewind"):
                problems.append(f"{path}: {dsname}: dbname {conn.get('dbname')!r}, expected 'tradewind'")
        rels = [r for r in ds.iter("relation") if r.get("type") == "table"]
        if len(rels) != 1:
            problems.append(f"{path}: {dsname}: expected exactly one relation, found {len(rels)}")
            continue
        rel = rels[0].get("table", "").strip("[]").split("].[")[-1]
        if rel in tables:
            problems.append(f"{path}: {dsname}: reads table {rel}; point it at a view so the table can evolve")
            continue
        if rel not in views:
            problems.append(f"{path}: {dsname}: relation {rel} is not a view in schemas/mysql")
            continue
        ds_views[dsname] = rel
        have = set(views[rel][0])
        refs = set()
        for rec in ds.iter("metadata-record"):
            if rec.get("class") == "column":
                refs.add(rec.findtext("remote-name"))
                parent = (rec.findtext("parent-name") or "").strip("[]")
                if parent and parent != rel:
                    problems.append(f"{path}: {dsname}: metadata record parent {parent} != relation {rel}")
        for col in ds.iter("column"):
            if col.get("name"):
                refs.add(col.get("name").strip("[]"))
        for r in sorted(refs - have):
            problems.append(f"{path}: {dsname}: column {r!r} is not in view {rel}")

    # Worksheets: every column they use must exist in the view behind their data source.
    for ws in root.iter("worksheet"):
        wname = ws.get("name")
        refs = set()
        for dep in ws.iter("datasource-dependencies"):
            dsn = dep.get("datasource")
            for col in dep.iter("column"):
                refs.add((dsn, col.get("name").strip("[]")))
            for ci in dep.iter("column-instance"):
                refs.add((dsn, ci.get("column").strip("[]")))
                refs.add((dsn, field_to_column(ci.get("name").strip("[]"))))
        texts = [e.text or "" for e in ws.iter() if e.tag in ("rows", "cols")]
        texts += [v for e in ws.iter() for k, v in e.attrib.items() if k in ("column", "using", "level")]
        for t in texts:
            for dsn, field in FIELD_RE.findall(t):
                refs.add((dsn, field_to_column(field)))
        if not refs:
            problems.append(f"{path}: worksheet {wname!r} references no column")
        for dsn, col in sorted(refs):
            view = ds_views.get(dsn)
            if view is None:
                problems.append(f"{path}: worksheet {wname!r}: unknown data source {dsn!r}")
            elif col not in views[view][0]:
                problems.append(f"{path}: worksheet {wname!r}: column {col!r} is not in view {view}")
    return ds_views


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--schemas", default=os.path.join(ROOT, "schemas", "mysql"))
    ap.add_argument("--live", action="store_true", help="also apply the DDL to a temporary MariaDB database")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(os.path.join(ROOT, "tableau", "*.tds")) +
                                 glob.glob(os.path.join(ROOT, "tableau", "*.twb")))
    problems = []
    if not glob.glob(os.path.join(args.schemas, "*.sql")):
        print(f"no DDL in {args.schemas}", file=sys.stderr)
        return 1
    tables, views = parse_ddl(args.schemas)
    # Each view column that is a bare column of its source table must exist there.
    for v, (cols, sources, select) in views.items():
        src_cols = set(c for s in sources for c in tables.get(s, []))
        for item in split_top_level(select):
            m = re.fullmatch(r"`?(\w+)`?(?:\s+AS\s+`?\w+`?)?", item, re.I)
            if m and sources and m.group(1) not in src_cols:
                problems.append(f"schemas: view {v}: column {m.group(1)} not in {sources}")
    if args.live:
        live = live_columns(args.schemas, list(views))
        for v, (cols, _, _) in views.items():
            if live[v] != cols:
                problems.append(f"schemas: view {v}: parsed columns {cols} != live columns {live[v]}")
    used = {}
    for f in files:
        used.update(check_file(f, tables, views, problems))
    for p in problems:
        print(p)
    summary = ", ".join(f"{ds} -> {v} ({len(views[v][0])} columns)" for ds, v in sorted(used.items()))
    print(f"{len(files)} files checked against {len(views)} views{' (live)' if args.live else ''}: "
          f"{summary}; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
