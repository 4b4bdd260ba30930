#!/usr/bin/env python3
"""Check tableau/*.tds and tableau/*.twb against the MySQL DDL, and run every worksheet's query on MariaDB.

Static checks (always):
  * every connection is a live MySQL connection with server, port, dbname and username and NO password,
    reading one view (not a table) defined in schemas/mysql; every column the files name exists in it;
  * every calculated field resolves: each [reference] is a view column, another calculation or a
    parameter, without cycles, using only functions this check can translate to SQL; aggregate
    calculations are used with derivation 'User' and row-level ones are aggregated (Tableau rejects both
    mistakes); no formula uses NOW()/TODAY() and no sheet has a relative-date filter (those run on the
    client's clock and time zone against UTC DATETIMEs);
  * every dashboard zone names an existing sheet or parameter, lies inside the dashboard and does not
    overlap another, and every worksheet is laid out on a dashboard;
  * the files load in tableaudocumentapi (Tableau's own Python reader) and it sees the same worksheets,
    fields and formulas.
With --live (what CI runs), on the local MariaDB (root@127.0.0.1, no password):
  * migrates a scratch database with the real binary, `tradewind migrate --readonly-user ...
    --readonly-password-file ...`, and checks the password never appears in its output;
  * compares the parsed view columns with information_schema;
  * inserts a few minutes, hours and days of rows (asset_1m, asset_1h, asset_1d), then translates each worksheet (shelves, column instances and their
    aggregations, calculated fields, parameters, categorical, context and top-N filters, sorts) into SQL
    and runs it AS THE READ-ONLY USER: it must succeed, return rows, keep to the time window and top N,
    and give the same answer whatever the session time zone; the user must not read the tables.

    python3 scripts/check_tableau.py [--live] [--tradewind PATH] [--schemas DIR] [files...]

tableaudocumentapi is installed from PyPI into a private venv under ~/.cache/tradewind on first use (the
script re-runs itself there). Exit 0 when everything checks out, 1 with one line per problem otherwise.
"""
import argparse
import glob
import os
import re
import secrets
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VENV = os.path.join(os.path.expanduser("~"), ".cache", "tradewind", "tableau-venv")
DOCAPI = "tableaudocumentapi==0.11"
USER_NS = "{http://www.tableausoftware.com/xml/user}"


def ensure_docapi():
    """Import tableaudocumentapi, installing it into the private venv and re-running there if needed."""
    try:
        import tableaudocumentapi  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV) or os.environ.get("TW_TABLEAU_REEXEC"):
        sys.exit(f"tableaudocumentapi is not importable in {sys.executable}")
    if not os.path.exists(py):
        print(f"creating {VENV} for {DOCAPI}", file=sys.stderr)
        if subprocess.run([sys.executable, "-m", "venv", VENV]).returncode != 0:
            # Debian's python3 keeps venv/ensurepip in a separate package.
            subprocess.run(["apt-get", "install", "-y", "-q", "python3-venv"], check=True)
            subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", DOCAPI], check=True)
    os.environ["TW_TABLEAU_REEXEC"] = "1"
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


# ---------------------------------------------------------------- DDL

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
    """Return (tables: name -> [columns], views: name -> (columns, [source tables], select list))."""
    tables, views = {}, {}
    for path in sorted(glob.glob(os.path.join(schema_dir, "*.sql"))):
        sql = strip_sql_comments(open(path, encoding="utf-8").read())
        for stmt in split_top_level(sql, ";"):
            m = re.match(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?\s+LIKE\s+`?(\w+)`?$", stmt, re.I)
            if m:
                if m.group(2) not in tables:
                    raise SystemExit(f"{path}: {m.group(1)} is LIKE {m.group(2)}, which is not defined before it")
                tables[m.group(1)] = list(tables[m.group(2)])
                continue
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


# ---------------------------------------------------------------- Tableau formulas -> SQL

TOKEN_RE = re.compile(r"""\s+|\[Parameters\]\.\[[^\]]+\]|\[[^\]]+\]|'(?:[^']|'')*'|"(?:[^"]|"")*"|\d+(?:\.\d+)?|[A-Za-z_]\w*|<=|>=|<>|!=|==|[-+*/(),<>=%]""")
AGGREGATES = {"SUM", "AVG", "MIN", "MAX", "COUNT", "COUNTD", "MEDIAN"}
SCALARS = {"ABS", "ROUND", "ZN", "IFNULL", "SQRT", "LN", "EXP", "POWER"}
KEYWORDS = {"AND", "OR", "NOT", "CASE", "WHEN", "THEN", "ELSE", "END", "IF", "ELSEIF", "TRUE", "FALSE", "NULL", "IN"}
CLIENT_CLOCK = {"NOW", "TODAY"}


class FormulaError(Exception):
    pass


def tokenize(formula):
    pos, out = 0, []
    while pos < len(formula):
        m = TOKEN_RE.match(formula, pos)
        if not m:
            raise FormulaError(f"cannot read {formula[pos:pos + 20]!r}")
        if not m.group(0).isspace():
            out.append(m.group(0))
        pos = m.end()
    return out


def tableau_literal_to_sql(lit):
    """A Tableau literal ("x", 'x', 12, true) as SQL."""
    if lit is None:
        raise FormulaError("empty literal")
    if lit[:1] in "\"'" and lit[-1:] == lit[:1] and len(lit) >= 2:
        body = lit[1:-1].replace(lit[0] * 2, lit[0])
        return "'" + body.replace("\\", "\\\\").replace("'", "''") + "'"
    if lit.lower() in ("true", "false"):
        return lit.upper()
    if re.fullmatch(r"-?\d+(\.\d+)?", lit):
        return lit
    raise FormulaError(f"unsupported literal {lit!r}")


class Model:
    """One data source: its view's columns, calculations and the workbook's parameters."""

    def __init__(self, view, columns, calcs, params):
        self.view, self.columns, self.calcs, self.params = view, set(columns), calcs, params

    def translate(self, formula, stack=()):
        """Tableau formula -> (SQL, is_aggregate). Raises FormulaError for anything unresolved."""
        sql, agg, toks = [], False, tokenize(formula)
        i = 0
        while i < len(toks):
            t = toks[i]
            up = t.upper()
            if t.startswith("[Parameters]."):
                name = t[len("[Parameters]."):]
                if name not in self.params:
                    raise FormulaError(f"unknown parameter {t}")
                sql.append(tableau_literal_to_sql(self.params[name]))
            elif t.startswith("["):
                name = t.strip("[]")
                if name in self.columns:
                    sql.append(f"`{name}`")
                elif t in self.calcs:
                    if t in stack:
                        raise FormulaError(f"cycle through {t}")
                    inner, inner_agg = self.translate(self.calcs[t], stack + (t,))
                    sql.append(f"({inner})")
                    agg = agg or inner_agg
                else:
                    raise FormulaError(f"{t} is neither a column of {self.view}, a calculation nor a parameter")
            elif t[:1] in "'\"":
                sql.append(tableau_literal_to_sql(t))
            elif re.fullmatch(r"[A-Za-z_]\w*", t):
                nxt = toks[i + 1] if i + 1 < len(toks) else ""
                if up in CLIENT_CLOCK:
                    raise FormulaError(f"{up}() runs on the client's clock and time zone; use minutes_ago")
                if up in AGGREGATES and nxt == "(":
                    agg = True
                    sql.append("COUNT(DISTINCT " if up == "COUNTD" else up + "(")
                    i += 2
                    continue
                if up in SCALARS and nxt == "(":
                    sql.append({"ZN": "COALESCE(0+", "IFNULL": "IFNULL("}.get(up, up + "("))
                    i += 2
                    continue
                if up in KEYWORDS:
                    sql.append({"IF": "CASE WHEN", "ELSEIF": "WHEN"}.get(up, up))
                else:
                    raise FormulaError(f"unsupported function or name {t!r}")
            elif t == "==":
                sql.append("=")
            elif t == "%":
                sql.append("MOD")
            else:
                sql.append(t)
            i += 1
        return " ".join(sql), agg


# ---------------------------------------------------------------- workbook model

def ref_name(ref):
    """`[ds].[none:base:nk]` -> (`ds`, `none:base:nk`); `[base]` -> (None, `base`)."""
    m = re.fullmatch(r"\[([^\]]+)\]\.\[([^\]]+)\]", ref or "")
    if m:
        return m.group(1), m.group(2)
    return None, (ref or "").strip("[]")


FIELD_RE = re.compile(r"\[([^\[\]]+)\]\.\[([^\[\]]+)\]")
DERIVED_AGG = {"Sum": "SUM({})", "Avg": "AVG({})", "Min": "MIN({})", "Max": "MAX({})", "Count": "COUNT({})",
               "CountD": "COUNT(DISTINCT {})", "Median": "MEDIAN({})"}
DERIVED_DIM = {"None": "{}", "Minute-Trunc": "DATE_FORMAT({}, '%Y-%m-%d %H:%i:00')",
               "Hour-Trunc": "DATE_FORMAT({}, '%Y-%m-%d %H:00:00')", "Day-Trunc": "DATE({})"}


def load_datasources(root, path, tables, views, problems):
    """Return ({ds name: Model}, {ds name: caption}) for the file's data sources, checking connections."""
    params = {}
    for ds in root.iter("datasource"):
        if ds.get("name") == "Parameters":
            for col in ds.findall("column"):
                params[col.get("name")] = col.get("value")
                if col.get("value") is None:
                    problems.append(f"{path}: parameter {col.get('name')} has no value")
    models = {}
    top = [root] if root.tag == "datasource" else root.findall("./datasources/datasource")
    for ds in top:
        if ds.get("name") == "Parameters":
            continue
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
            if conn.get("username") == "root":
                problems.append(f"{path}: {dsname}: connects as root; use the read-only user")
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
        have = set(views[rel][0])
        calcs = {}
        for col in ds.findall("column"):
            calc = col.find("calculation")
            if calc is not None:
                calcs[col.get("name")] = calc.get("formula") or ""
        for rec in ds.iter("metadata-record"):
            if rec.get("class") == "column":
                if rec.findtext("remote-name") not in have:
                    problems.append(f"{path}: {dsname}: metadata record {rec.findtext('remote-name')!r} is not in view {rel}")
                parent = (rec.findtext("parent-name") or "").strip("[]")
                if parent and parent != rel:
                    problems.append(f"{path}: {dsname}: metadata record parent {parent} != relation {rel}")
        for col in ds.findall("column"):
            n = col.get("name", "")
            if n not in calcs and n.strip("[]") not in have:
                problems.append(f"{path}: {dsname}: column {n!r} is not in view {rel} and has no calculation")
        model = Model(rel, have, calcs, params)
        for name, formula in calcs.items():
            try:
                model.translate(formula, (name,))
            except FormulaError as err:
                problems.append(f"{path}: {dsname}: calculation {name} = {formula!r}: {err}")
        models[dsname] = model
    return models


class Instance:
    def __init__(self, name, column, derivation):
        self.name, self.column, self.derivation = name, column, derivation


def compile_sheet(ws, models, path, problems):
    """Translate a worksheet into (sql, info) or None, recording problems."""
    wname = ws.get("name")
    p0 = len(problems)

    def bad(msg):
        problems.append(f"{path}: worksheet {wname!r}: {msg}")

    instances, dsn_used = {}, set()
    for dep in ws.iter("datasource-dependencies"):
        dsn = dep.get("datasource")
        if dsn == "Parameters":
            continue
        if dsn not in models:
            bad(f"unknown data source {dsn!r}")
            continue
        dsn_used.add(dsn)
        model = models[dsn]
        for col in dep.findall("column"):
            n = col.get("name")
            calc = col.find("calculation")
            if calc is not None and model.calcs.get(n) != calc.get("formula"):
                bad(f"calculation {n} differs from the data source's")
            if calc is None and n.strip("[]") not in model.columns:
                bad(f"column {n} is not in view {model.view}")
        for ci in dep.findall("column-instance"):
            instances[(dsn, ci.get("name").strip("[]"))] = Instance(ci.get("name").strip("[]"), ci.get("column"),
                                                                    ci.get("derivation"))
    if len(dsn_used) != 1:
        bad(f"expects one data source, uses {sorted(dsn_used)}")
        return None
    dsn = dsn_used.pop()
    model = models[dsn]

    def expr(inst_name):
        inst = instances.get((dsn, inst_name))
        if inst is None:
            raise FormulaError(f"[{inst_name}] has no column-instance")
        base, agg = model.translate(inst.column)
        if inst.derivation == "User":
            if not agg:
                raise FormulaError(f"{inst.name}: derivation User on the row-level {inst.column} (Tableau aggregates it)")
            return base, True
        if agg:
            raise FormulaError(f"{inst.name}: {inst.derivation} of the aggregate {inst.column} (cannot aggregate an aggregate)")
        if inst.derivation in DERIVED_AGG:
            return DERIVED_AGG[inst.derivation].format(base), True
        if inst.derivation in DERIVED_DIM:
            return DERIVED_DIM[inst.derivation].format(base), False
        raise FormulaError(f"{inst.name}: unsupported derivation {inst.derivation!r}")

    shelf = [ws.findtext(".//rows") or "", ws.findtext(".//cols") or ""]
    shelf += [e.get("column", "") for enc in ws.iter("encodings") for e in enc]
    shown = []
    for t in shelf:
        for d, f in FIELD_RE.findall(t):
            if d != dsn:
                bad(f"shelf field [{d}].[{f}] is not from {dsn}")
            elif f not in shown:
                shown.append(f)
    if not shown:
        bad("has nothing on rows, columns or marks")
    where, having, joins, context, tops = [], [], [], [], []
    for flt in ws.iter("filter"):
        d, inst = ref_name(flt.get("column"))
        cls = flt.get("class")
        if cls == "relative-date":
            bad(f"relative-date filter on {inst}: it runs on the client's clock and time zone against UTC "
                "DATETIMEs; filter on minutes_ago instead")
            continue
        if cls != "categorical":
            bad(f"unsupported filter class {cls!r}")
            continue
        gf = flt.find("groupfilter")
        try:
            e, is_agg = expr(inst)
            if gf is not None and gf.get("function") == "member":
                cond = f"{e} = {tableau_literal_to_sql(gf.get('member'))}"
                (having if is_agg else (context if flt.get("context") == "true" else where)).append(cond)
            elif gf is not None and gf.get("function") == "end":
                order = gf.find("groupfilter")
                if order is None or order.get("function") != "order":
                    raise FormulaError("top-N filter without an order")
                by, by_agg = model.translate(order.get("expression"))
                if not by_agg:
                    raise FormulaError(f"top-N by a row-level expression {order.get('expression')!r}")
                n = int(gf.get("count"))
                tops.append((e, by, "ASC" if gf.get("end") == "bottom" else order.get("direction", "DESC"), n))
            else:
                raise FormulaError(f"unsupported groupfilter {gf.get('function') if gf is not None else None!r}")
        except (FormulaError, ValueError, TypeError) as err:
            bad(f"filter on {inst}: {err}")
    order_by = []
    for s in ws.iter("computed-sort"):
        try:
            order_by.append(f"{expr(ref_name(s.get('using'))[1])[0]} {s.get('direction', 'ASC')}")
            if ref_name(s.get("column"))[1] not in shown:
                bad(f"sorts {s.get('column')}, which is not shown")
        except FormulaError as err:
            bad(f"sort: {err}")
    select, group = [], []
    for f in shown:
        try:
            e, is_agg = expr(f)
        except FormulaError as err:
            bad(str(err))
            continue
        select.append(f"{e} AS `{f}`")
        if not is_agg:
            group.append(e)
    if len(problems) > p0:
        return None
    # Tableau's order of operations: context filters, then top N, then the other dimension filters.
    ctx = " AND ".join(context) or "TRUE"
    for k, (e, by, direction, n) in enumerate(tops):
        joins.append(f"JOIN (SELECT {e} AS k FROM `{model.view}` WHERE {ctx} GROUP BY {e} "
                     f"ORDER BY {by} {direction} LIMIT {n}) top{k} ON {e} = top{k}.k")
    sql = f"SELECT {', '.join(select)} FROM `{model.view}` {' '.join(joins)} WHERE {' AND '.join(context + where) or 'TRUE'}"
    if group:
        sql += " GROUP BY " + ", ".join(group)
    if having:
        sql += " HAVING " + " AND ".join(having)
    if order_by:
        sql += " ORDER BY " + ", ".join(order_by)
    info = {"columns": shown, "top": [n for (_e, _b, _d, n) in tops],
            "time_cols": [f for f in shown if instances[(dsn, f)].derivation.endswith("-Trunc")],
            "windowed": [a for a in WINDOW_CUTOFFS if f"`{a}`" in sql], "minutes": model.params}
    return sql + " LIMIT 5000", info


def check_dashboards(root, path, problems):
    sheets = [w.get("name") for w in root.iter("worksheet")]
    params = {c.get("name") for ds in root.iter("datasource") if ds.get("name") == "Parameters" for c in ds.findall("column")}
    laid_out = set()
    dashboards = list(root.iter("dashboard"))
    if sheets and not dashboards:
        problems.append(f"{path}: no dashboard lays out the worksheets")
    for db in dashboards:
        dname = db.get("name")
        rects = []

        def walk(zone, px, py, pw, ph):
            x, y, w, h = (int(zone.get(k, "0")) for k in ("x", "y", "w", "h"))
            if w <= 0 or h <= 0 or x < px or y < py or x + w > px + pw or y + h > py + ph:
                problems.append(f"{path}: dashboard {dname!r}: zone {zone.get('id')} ({x},{y},{w},{h}) lies outside its parent")
            if zone.get("name") is not None:
                if zone.get("name") not in sheets:
                    problems.append(f"{path}: dashboard {dname!r}: zone names unknown sheet {zone.get('name')!r}")
                laid_out.add(zone.get("name"))
                rects.append((zone.get("name"), x, y, w, h))
            elif zone.get("type") == "paramctrl":
                p = zone.get("param", "")
                if not p.startswith("[Parameters].") or p[len("[Parameters]."):] not in params:
                    problems.append(f"{path}: dashboard {dname!r}: control for unknown parameter {p!r}")
                rects.append((p, x, y, w, h))
            for child in zone.findall("zone"):
                walk(child, x, y, w, h)

        for z in db.findall("./zones/zone"):
            walk(z, 0, 0, 100000, 100000)
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                if a[1] < b[1] + b[3] and b[1] < a[1] + a[3] and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]:
                    problems.append(f"{path}: dashboard {dname!r}: {a[0]!r} overlaps {b[0]!r}")
        if db.find("size") is None:
            problems.append(f"{path}: dashboard {dname!r} has no size")
    for s in sheets:
        if s not in laid_out:
            problems.append(f"{path}: worksheet {s!r} is on no dashboard")
    return len(dashboards)


def check_with_docapi(path, root, models, problems):
    """Load the file with tableaudocumentapi and compare what it sees with this script's reading."""
    from tableaudocumentapi import Datasource, Workbook
    if root.tag == "datasource":
        dss = [Datasource.from_file(path)]
        sheets = []
    else:
        wb = Workbook(path)
        dss = wb.datasources
        sheets = wb.worksheets
        mine = [w.get("name") for w in root.iter("worksheet")]
        if sorted(sheets) != sorted(mine):
            problems.append(f"{path}: tableaudocumentapi sees worksheets {sheets}, expected {mine}")
    calcs = 0
    for ds in dss:
        model = models.get(ds.name) or (next(iter(models.values())) if root.tag == "datasource" and models else None)
        if model is None:
            continue
        for fid, field in ds.fields.items():
            if field.calculation is not None:
                calcs += 1
                if model.calcs.get(fid) != field.calculation:
                    problems.append(f"{path}: tableaudocumentapi reads {fid} = {field.calculation!r}, this script {model.calcs.get(fid)!r}")
            elif fid.strip("[]") not in model.columns:
                problems.append(f"{path}: tableaudocumentapi field {fid} is not in view {model.view}")
            for w in field.worksheets or []:
                if w not in sheets:
                    problems.append(f"{path}: field {fid} used by unknown sheet {w!r}")
        for c in ds.connections:
            if c.dbclass != "mysql" or not c.username:
                problems.append(f"{path}: tableaudocumentapi connection {c.dbclass!r} as {c.username!r}")
    return calcs


# ---------------------------------------------------------------- live MariaDB

BASE = ["mariadb", "-h127.0.0.1", "--protocol=tcp", "--batch"]


def sql_root(db, sql, header=False):
    cmd = BASE + ["-uroot"] + ([] if header else ["--skip-column-names"]) + ([db] if db else []) + ["-e", sql]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def sql_as(cnf, db, sql):
    cmd = ["mariadb", f"--defaults-extra-file={cnf}"] + BASE[1:] + [db, "-e", sql]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    lines = r.stdout.splitlines()
    if not lines:
        return [], []
    return lines[0].split("\t"), [ln.split("\t") for ln in lines[1:]]


def find_binary(arg):
    if arg:
        return arg
    for d in (os.environ.get("CARGO_TARGET_DIR"), os.path.join(ROOT, "target")):
        if d and os.path.exists(os.path.join(d, "release", "tradewind")):
            return os.path.join(d, "release", "tradewind")
    sys.exit("no tradewind binary: build it (cargo build --release) or pass --tradewind PATH")


# Time-window columns of the views, with the age (in the DDL's units) beyond which no windowed sheet may
# show a row: the seeded rows are recent, plus one bitcoin row older than this in each view.
WINDOW_CUTOFFS = {"minutes_ago": "1 DAY", "hours_ago": "45 DAY", "days_ago": "45 DAY"}

SEED_ROWS = """
INSERT INTO asset_1m (base, window_start, window_end, trades, buys, sells, volume, buy_volume, sell_volume,
                      notional_usd, vwap_usd, close_usd, price_change_pct, price_trend, is_final, revision)
WITH RECURSIVE m(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM m WHERE k < 5),
a(base, price, n) AS (SELECT 'bitcoin', 97000, 1 UNION ALL SELECT 'ethereum', 3300, 2 UNION ALL SELECT 'solana', 190, 3
                      UNION ALL SELECT 'xrp', 2.3, 4)
SELECT a.base,
       DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL m.k MINUTE, '%Y-%m-%d %H:%i:00'),
       DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL m.k - 1 MINUTE, '%Y-%m-%d %H:%i:00'),
       100 * a.n, 60 * a.n, 40 * a.n, 10 * a.n, 6 * a.n, 4 * a.n,
       10 * a.n * a.price * (1 + m.k / 1000), a.price * (1 + m.k / 1000), a.price * (1 + m.k / 1000),
       (m.k - 3) * a.n / 10, IF(m.k > 3, 'up', IF(m.k < 3, 'down', 'flat')), IF(m.k > 1, 1, 0), 0
FROM m CROSS JOIN a;
INSERT INTO asset_1m (base, window_start, window_end, trades, volume, buy_volume, sell_volume, notional_usd,
                      vwap_usd, price_change_pct, price_trend, is_final)
VALUES ('bitcoin', DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL 3 DAY, '%Y-%m-%d %H:%i:00'),
        DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL 3 DAY - INTERVAL 1 MINUTE, '%Y-%m-%d %H:%i:00'),
        1, 1, 1, 0, 1e12, 1e12, 99, 'up', 1);
INSERT INTO asset_1h (base, window_start, window_end, trades, buys, sells, volume, buy_volume, sell_volume,
                      notional_usd, vwap_usd, high_usd, low_usd, close_usd, price_change_pct, price_trend,
                      is_final, revision)
WITH RECURSIVE h(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM h WHERE k < 47),
a(base, price, n) AS (SELECT 'bitcoin', 97000, 1 UNION ALL SELECT 'ethereum', 3300, 2 UNION ALL SELECT 'solana', 190, 3
                      UNION ALL SELECT 'xrp', 2.3, 4)
SELECT a.base,
       DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL h.k HOUR, '%Y-%m-%d %H:00:00'),
       DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL h.k - 1 HOUR, '%Y-%m-%d %H:00:00'),
       6000 * a.n, 3600 * a.n, 2400 * a.n, 600 * a.n, 360 * a.n, 240 * a.n,
       600 * a.n * a.price * (1 + h.k / 1000), a.price * (1 + h.k / 1000), a.price * (1 + h.k / 900),
       a.price * (1 + h.k / 1100), a.price * (1 + h.k / 1000), (h.k - 3) * a.n / 10,
       IF(h.k > 3, 'up', IF(h.k < 3, 'down', 'flat')), IF(h.k > 0, 1, 0), 0
FROM h CROSS JOIN a;
INSERT INTO asset_1d (base, window_start, window_end, trades, buys, sells, volume, buy_volume, sell_volume,
                      notional_usd, vwap_usd, high_usd, low_usd, close_usd, price_change_pct, price_trend,
                      is_final, revision)
WITH RECURSIVE d(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM d WHERE k < 13),
a(base, price, n) AS (SELECT 'bitcoin', 97000, 1 UNION ALL SELECT 'ethereum', 3300, 2 UNION ALL SELECT 'solana', 190, 3
                      UNION ALL SELECT 'xrp', 2.3, 4)
SELECT a.base, DATE(UTC_TIMESTAMP() - INTERVAL d.k DAY), DATE(UTC_TIMESTAMP() - INTERVAL d.k - 1 DAY),
       144000 * a.n, 86400 * a.n, 57600 * a.n, 14400 * a.n, 8640 * a.n, 5760 * a.n,
       14400 * a.n * a.price * (1 + d.k / 100), a.price * (1 + d.k / 100), a.price * (1 + d.k / 90),
       a.price * (1 + d.k / 110), a.price * (1 + d.k / 100), (d.k - 3) * a.n / 10,
       IF(d.k > 3, 'up', IF(d.k < 3, 'down', 'flat')), IF(d.k > 0, 1, 0), 0
FROM d CROSS JOIN a;
INSERT INTO asset_1h (base, window_start, window_end, trades, volume, notional_usd, vwap_usd, high_usd, low_usd,
                      is_final)
VALUES ('bitcoin', DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL 60 DAY, '%Y-%m-%d %H:00:00'),
        DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL 60 DAY + INTERVAL 1 HOUR, '%Y-%m-%d %H:00:00'), 1, 1, 1e12, 1e12,
        1e12, 1e12, 1);
INSERT INTO asset_1d (base, window_start, window_end, trades, volume, notional_usd, vwap_usd, high_usd, low_usd,
                      is_final)
VALUES ('bitcoin', DATE(UTC_TIMESTAMP() - INTERVAL 500 DAY), DATE(UTC_TIMESTAMP() - INTERVAL 499 DAY), 1, 1, 1e12,
        1e12, 1e12, 1e12, 1);
"""


def live_check(args, files_models, views, problems):
    binary = find_binary(args.tradewind)
    pid = os.getpid()
    db, user = f"tw_tableau_check_{pid}", f"tw_tableau_ro_{pid}"
    password = "pw'" + secrets.token_urlsafe(12)
    tmp = tempfile.mkdtemp(prefix="tw_tableau_")
    pwfile, cnf = os.path.join(tmp, "password"), os.path.join(tmp, "client.cnf")
    for p, text in ((pwfile, password + "\n"), (cnf, f"[client]\nuser={user}\npassword=\"{password}\"\n")):
        with open(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
            fh.write(text)
    ran = 0
    try:
        r = subprocess.run([binary, "migrate", "--mysql-url", f"mysql://root@127.0.0.1:3306/{db}",
                            "--readonly-user", user, "--readonly-password-file", pwfile],
                           capture_output=True, text=True, env={**os.environ, "RUST_LOG": "debug"})
        if r.returncode != 0:
            problems.append(f"live: tradewind migrate failed: {r.stderr.strip()[-500:]}")
            return 0
        if password in r.stdout + r.stderr or password[3:] in r.stdout + r.stderr:
            problems.append("live: tradewind migrate printed the read-only password")
        out = sql_root(None, "SELECT table_name, column_name FROM information_schema.columns "
                             f"WHERE table_schema = '{db}' ORDER BY table_name, ordinal_position")
        live = {}
        for line in out.splitlines():
            t, c = line.split("\t")
            live.setdefault(t, []).append(c)
        for v, (cols, _s, _sel) in views.items():
            if live.get(v) != cols:
                problems.append(f"live: view {v}: parsed columns {cols} != live columns {live.get(v)}")
        sql_root(db, SEED_ROWS)
        try:
            sql_as(cnf, db, "SELECT COUNT(*) FROM asset_1m")
            problems.append("live: the read-only user can read table asset_1m")
        except RuntimeError:
            pass
        # The seeded rows span the last 5 minutes, 48 hours and 14 days, plus one bitcoin minute 3 days
        # ago, hour 60 days ago and day 500 days ago that every time-windowed sheet must leave out.
        cutoffs = {a: sql_root(db, f"SELECT DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL {age}, '%Y-%m-%d %H:%i:00')").strip()
                   for a, age in WINDOW_CUTOFFS.items()}
        for path, root, models in files_models:
            for ws in root.iter("worksheet"):
                wname = ws.get("name")
                compiled = compile_sheet(ws, models, path, problems)
                if compiled is None:
                    continue
                sql, info = compiled
                results = []
                for tz in ("+00:00", "+09:00", "-05:00"):
                    try:
                        results.append(sql_as(cnf, db, f"SET time_zone = '{tz}'; {sql}"))
                    except RuntimeError as err:
                        problems.append(f"live: worksheet {wname!r}: query failed as the read-only user: {err}\n  {sql}")
                        break
                else:
                    ran += 1
                    header, rows = results[0]
                    if any(r != results[0] for r in results[1:]):
                        problems.append(f"live: worksheet {wname!r}: results depend on the session time zone")
                    if not rows:
                        problems.append(f"live: worksheet {wname!r}: no rows\n  {sql}")
                    for n in info["top"]:
                        if len(rows) > n * 3:
                            problems.append(f"live: worksheet {wname!r}: {len(rows)} rows despite a top {n} filter")
                    for tcol in info["time_cols"]:
                        i = header.index(tcol)
                        for row in rows:
                            for age in info["windowed"]:
                                if row[i] < cutoffs[age]:
                                    problems.append(f"live: worksheet {wname!r}: {tcol} {row[i]} is outside the "
                                                    f"time window ({age})")
                    for row in rows:
                        for h, v in zip(header, row):
                            if v.lower() in ("nan", "inf", "-inf"):
                                problems.append(f"live: worksheet {wname!r}: {h} = {v}")
                    if args.verbose:
                        print(f"-- {wname}: {len(rows)} rows\n{sql}\n  {header}\n  " +
                              "\n  ".join("\t".join(r) for r in rows[:5]))
    finally:
        subprocess.run(BASE + ["-uroot", "-e", f"DROP DATABASE IF EXISTS `{db}`; DROP USER IF EXISTS '{user}'@'%'"],
                       check=False)
        for p in (pwfile, cnf):
            os.remove(p)
        os.rmdir(tmp)
    return ran


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--schemas", default=os.path.join(ROOT, "schemas", "mysql"))
    ap.add_argument("--live", action="store_true", help="migrate a scratch database and run every sheet's SQL on MariaDB")
    ap.add_argument("--tradewind", help="path of the tradewind binary (default: $CARGO_TARGET_DIR/release/tradewind)")
    ap.add_argument("--verbose", action="store_true", help="print each worksheet's SQL and first rows")
    args = ap.parse_args()
    ensure_docapi()
    files = args.files or sorted(glob.glob(os.path.join(ROOT, "tableau", "*.tds")) +
                                 glob.glob(os.path.join(ROOT, "tableau", "*.twb")))
    problems = []
    if not glob.glob(os.path.join(args.schemas, "*.sql")):
        print(f"no DDL in {args.schemas}", file=sys.stderr)
        return 1
    tables, views = parse_ddl(args.schemas)
    for v, (cols, sources, select) in views.items():
        src_cols = set(c for s in sources for c in tables.get(s, []))
        for item in split_top_level(select):
            m = re.fullmatch(r"(?:`?\w+`?\.)?`?(\w+)`?(?:\s+AS\s+`?\w+`?)?", item, re.I)
            if m and sources and m.group(1) not in src_cols:
                problems.append(f"schemas: view {v}: column {m.group(1)} not in {sources}")
    files_models, sheets, calcs, dashboards = [], 0, 0, 0
    for f in files:
        root = ET.parse(f).getroot()
        models = load_datasources(root, f, tables, views, problems)
        for ws in root.iter("worksheet"):
            sheets += 1
            compile_sheet(ws, models, f, problems) if not args.live else None
        if root.tag == "workbook":
            dashboards += check_dashboards(root, f, problems)
        calcs += check_with_docapi(f, root, models, problems)
        files_models.append((f, root, models))
    ran = live_check(args, files_models, views, problems) if args.live else 0
    for p in problems:
        print(p)
    print(f"{len(files)} files checked against {len(views)} views: {sheets} worksheets, {calcs} calculated fields, "
          f"{dashboards} dashboards" + (f", {ran} worksheet queries run on MariaDB as the read-only user" if args.live else "")
          + f"; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
