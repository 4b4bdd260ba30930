#!/usr/bin/env python3
"""Generate tableau/tradewind.tds (data source) and tableau/tradewind.twb (workbook with a dashboard).

The workbook is dashboard-as-code, like grafana/tradewind.json: edit this script, run it, commit both
outputs. scripts/check_tableau.py checks the generated XML independently (fields resolve against the
DDL, every worksheet's query runs on MariaDB as the read-only user, the dashboard lays out every sheet).

    python3 scripts/gen_tableau.py            # rewrite tableau/tradewind.tds and tableau/tradewind.twb
    python3 scripts/gen_tableau.py --check    # exit 1 if the committed files differ from the output

Time zones: the data source reads v_tableau_asset_minute (schemas/mysql/010_tableau_views.sql), whose
`minutes_ago` is computed by the database from UTC_TIMESTAMP(). The "time window" filter compares that
integer with a parameter, so it selects the same minutes whatever the client's time zone; no sheet uses
Tableau's NOW() or a relative-date filter on the UTC DATETIME columns (those use the client's clock and
zone). Times on axes are labelled UTC.
"""
import argparse
import os
import sys
from xml.sax.saxutils import quoteattr

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DS = "federated.tradewind"
VIEW = "v_tableau_asset_minute"
READONLY_USER = "tableau"

# View columns: (name, caption, datatype, role, type, remote-type, default aggregation).
COLUMNS = [
    ("base", "Asset", "string", "dimension", "nominal", 129, "Count"),
    ("window_start", "Minute (UTC)", "datetime", "dimension", "ordinal", 135, "Year"),
    ("window_end", "Minute end (UTC)", "datetime", "dimension", "ordinal", 135, "Year"),
    ("trades", "Trades", "integer", "measure", "quantitative", 20, "Sum"),
    ("buys", "Buy trades", "integer", "measure", "quantitative", 20, "Sum"),
    ("sells", "Sell trades", "integer", "measure", "quantitative", 20, "Sum"),
    ("volume", "Volume (base units)", "real", "measure", "quantitative", 5, "Sum"),
    ("buy_volume", "Buy volume (base units)", "real", "measure", "quantitative", 5, "Sum"),
    ("sell_volume", "Sell volume (base units)", "real", "measure", "quantitative", 5, "Sum"),
    ("notional_usd", "Notional (USD)", "real", "measure", "quantitative", 5, "Sum"),
    ("vwap_usd", "Minute VWAP (USD)", "real", "measure", "quantitative", 5, "Avg"),
    ("open_usd", "Open (USD)", "real", "measure", "quantitative", 5, "Avg"),
    ("high_usd", "High (USD)", "real", "measure", "quantitative", 5, "Max"),
    ("low_usd", "Low (USD)", "real", "measure", "quantitative", 5, "Min"),
    ("close_usd", "Close (USD)", "real", "measure", "quantitative", 5, "Avg"),
    ("price_change_pct", "Price change % (vs previous minute)", "real", "measure", "quantitative", 5, "Sum"),
    ("price_trend", "Trend", "string", "dimension", "nominal", 129, "Count"),
    ("is_final", "Is final", "integer", "dimension", "ordinal", 16, "Count"),
    ("window_status", "Minute status", "string", "dimension", "nominal", 129, "Count"),
    ("revision", "Late trades folded in", "integer", "measure", "quantitative", 19, "Sum"),
    ("minutes_ago", "Minutes ago (computed in the database, UTC)", "integer", "dimension", "ordinal", 20, "Sum"),
    ("minutes_before_latest", "Minutes before the newest minute", "integer", "dimension", "ordinal", 20, "Sum"),
    ("is_last_closed", "Is the last closed minute", "integer", "dimension", "ordinal", 16, "Count"),
]

# Parameters: (name, caption, datatype, current value as a Tableau literal, extra XML).
PARAMETERS = [
    ("[Parameter_asset]", "Asset", "string", '"bitcoin"',
     "list", ['"bitcoin"', '"ethereum"', '"solana"', '"xrp"', '"binance-coin"', '"dogecoin"', '"cardano"',
              '"tron"', '"avalanche"', '"chainlink"']),
    ("[Parameter_minutes]", "Minutes shown", "integer", "60", "range", (5, 1440, 5)),
]

# Calculated fields: (name, caption, datatype, role, type, formula, default format).
CALCS = [
    ("[Calculation_vwap]", "VWAP (USD)", "real", "measure", "quantitative",
     "SUM([notional_usd]) / SUM([volume])", "c\"$\"#,##0.00"),
    ("[Calculation_notional_m]", "Notional ($M)", "real", "measure", "quantitative",
     "[notional_usd] / 1000000", "n#,##0.00"),
    ("[Calculation_buy_share]", "Buy share", "real", "measure", "quantitative",
     "SUM([buy_volume]) / SUM([volume])", "p0.0%"),
    ("[Calculation_net_pressure]", "Net buy pressure", "real", "measure", "quantitative",
     "(SUM([buy_volume]) - SUM([sell_volume])) / SUM([volume])", "p0.0%"),
    ("[Calculation_abs_change]", "Size of move %", "real", "measure", "quantitative",
     "ABS([price_change_pct])", "n0.000"),
    ("[Calculation_selected]", "Is the chosen asset", "boolean", "dimension", "nominal",
     "[base] = [Parameters].[Parameter_asset]", None),
    ("[Calculation_in_window]", "In the time window", "boolean", "dimension", "nominal",
     "[minutes_ago] < [Parameters].[Parameter_minutes]", None),
]


def e(s):
    return quoteattr(str(s))


def column_xml(name, caption, datatype, role, typ, indent):
    return f"{indent}<column caption={e(caption)} datatype={e(datatype)} name={e('[' + name + ']')} role={e(role)} type={e(typ)} />"


def calc_xml(c, indent):
    name, caption, datatype, role, typ, formula, fmt = c
    f = f" default-format={e(fmt)}" if fmt else ""
    return (f"{indent}<column caption={e(caption)} datatype={e(datatype)}{f} name={e(name)} role={e(role)} type={e(typ)}>\n"
            f"{indent}  <calculation class='tableau' formula={e(formula)} />\n"
            f"{indent}</column>")


def connection_xml(indent):
    i = indent
    recs = []
    for n, (name, _cap, datatype, _role, _typ, remote, agg) in enumerate(COLUMNS, 1):
        recs.append(
            f"{i}    <metadata-record class='column'>\n"
            f"{i}      <remote-name>{name}</remote-name>\n"
            f"{i}      <remote-type>{remote}</remote-type>\n"
            f"{i}      <local-name>[{name}]</local-name>\n"
            f"{i}      <parent-name>[{VIEW}]</parent-name>\n"
            f"{i}      <remote-alias>{name}</remote-alias>\n"
            f"{i}      <ordinal>{n}</ordinal>\n"
            f"{i}      <local-type>{datatype}</local-type>\n"
            f"{i}      <aggregation>{agg}</aggregation>\n"
            f"{i}      <contains-null>true</contains-null>\n"
            f"{i}    </metadata-record>")
    return "\n".join([
        f"{i}<connection class='federated'>",
        f"{i}  <named-connections>",
        f"{i}    <named-connection caption='127.0.0.1' name='mysql.tradewind'>",
        f"{i}      <!-- Live MySQL/MariaDB connection as the read-only user {READONLY_USER!r} that `tradewind migrate`",
        f"{i}           creates when given its read-only user flag (SELECT on the views only). No password here:",
        f"{i}           Tableau prompts for it. -->",
        f"{i}      <connection class='mysql' dbname='tradewind' odbc-native-protocol='' one-time-sql='' port='3306' "
        f"server='127.0.0.1' source-charset='' sslmode='' username='{READONLY_USER}' />",
        f"{i}    </named-connection>",
        f"{i}  </named-connections>",
        f"{i}  <!-- A view, not a table: the tables can evolve behind it (schemas/mysql/010_tableau_views.sql). -->",
        f"{i}  <relation connection='mysql.tradewind' name='{VIEW}' table='[{VIEW}]' type='table' />",
        f"{i}  <metadata-records>",
        *recs,
        f"{i}  </metadata-records>",
        f"{i}</connection>",
    ])


def datasource_body(indent, with_parameters=True):
    cols = [column_xml(n, cap, dt, role, typ, indent) for (n, cap, dt, role, typ, _r, _a) in COLUMNS]
    # A stand-alone data source cannot hold parameters: calculations on them live in the workbook only.
    calcs = [calc_xml(c, indent) for c in CALCS if with_parameters or "[Parameters]." not in c[5]]
    return "\n".join([connection_xml(indent), *cols, *calcs])


def parameters_xml(indent):
    i = indent
    out = [f"{i}<datasource hasconnection='false' inline='true' name='Parameters' version='18.1'>",
           f"{i}  <aliases enabled='yes' />"]
    for name, caption, datatype, value, domain, members in PARAMETERS:
        out.append(f"{i}  <column caption={e(caption)} datatype={e(datatype)} name={e(name)} param-domain-type={e(domain)} "
                   f"role='measure' type={e('nominal' if datatype == 'string' else 'quantitative')} value={e(value)}>")
        out.append(f"{i}    <calculation class='tableau' formula={e(value)} />")
        if domain == "list":
            out.append(f"{i}    <members>")
            out += [f"{i}      <member value={e(m)} />" for m in members]
            out.append(f"{i}    </members>")
        else:
            lo, hi, step = members
            out.append(f"{i}    <range granularity={e(step)} max={e(hi)} min={e(lo)} />")
        out.append(f"{i}  </column>")
    out.append(f"{i}</datasource>")
    return "\n".join(out)


def col_by_name(name):
    for c in COLUMNS:
        if c[0] == name:
            return column_xml(c[0], c[1], c[2], c[3], c[4], "")
    for c in CALCS:
        if c[0] == "[" + name + "]":
            return calc_xml(c, "")
    raise KeyError(name)


DERIV = {"none": "None", "sum": "Sum", "avg": "Avg", "ctd": "CountD", "usr": "User", "tmn": "Minute-Trunc"}


def instance(ref):
    """`none:base:nk` -> column-instance XML."""
    prefix, col, suffix = ref.split(":")
    typ = {"nk": "nominal", "ok": "ordinal", "qk": "quantitative"}[suffix]
    return (f"<column-instance column={e('[' + col + ']')} derivation={e(DERIV[prefix])} name={e('[' + ref + ']')} "
            f"pivot='key' type={e(typ)} />")


def f(ref):
    return f"[{DS}].[{ref}]"


def member_filter(ref, member, context=False):
    """A filter keeping one member; a context filter applies before top-N filters (Tableau's order)."""
    ctx = " context='true'" if context else ""
    return (f"<filter class='categorical'{ctx} column={e(f(ref))}>\n"
            f"  <groupfilter function='member' level={e('[' + ref + ']')} member={e(member)} "
            f"user:ui-domain='database' user:ui-enumeration='inclusive' user:ui-marker='enumerate' />\n"
            f"</filter>")


def top_filter(ref, count, expression):
    return (f"<filter class='categorical' column={e(f(ref))}>\n"
            f"  <groupfilter count={e(count)} end='top' function='end' units='records' user:ui-marker='end' "
            f"user:ui-top-by-field='true'>\n"
            f"    <groupfilter direction='DESC' expression={e(expression)} function='order' user:ui-marker='order'>\n"
            f"      <groupfilter function='level-members' level={e('[' + ref + ']')} user:ui-enumeration='all' "
            f"user:ui-marker='enumerate' />\n"
            f"    </groupfilter>\n"
            f"  </groupfilter>\n"
            f"</filter>")


def sort(ref, using, direction="DESC"):
    return f"<computed-sort column={e(f(ref))} direction={e(direction)} using={e(f(using))} />"


# Worksheets: name -> dict(title, rows, cols, mark, encodings, filters, sorts, instances, columns).
SHEETS = [
    {
        "name": "VWAP and volume",
        "title": "<[Parameters].[Parameter_asset]>: VWAP (line) and notional traded per minute ($M, bars)",
        "rows": f"({f('usr:Calculation_vwap:qk')} + {f('sum:Calculation_notional_m:qk')})",
        "cols": f("tmn:window_start:qk"),
        "mark": "Line",
        "encodings": [("tooltip", "sum:trades:qk")],
        "filters": [member_filter("none:Calculation_selected:nk", "true"),
                    member_filter("none:Calculation_in_window:nk", "true")],
        "sorts": [],
    },
    {
        "name": "Top movers (last closed minute)",
        "title": "Top movers of the last closed minute: price change % against the minute before",
        "rows": f("none:base:nk"),
        "cols": f("sum:price_change_pct:qk"),
        "mark": "Bar",
        "encodings": [("color", "none:price_trend:nk"), ("tooltip", "usr:Calculation_vwap:qk"),
                      ("tooltip", "sum:Calculation_notional_m:qk")],
        "filters": [member_filter("none:is_last_closed:ok", "1", context=True),
                    top_filter("none:base:nk", 10, "SUM([Calculation_abs_change])")],
        "sorts": [sort("none:base:nk", "sum:Calculation_abs_change:qk")],
    },
    {
        "name": "Buy/sell pressure",
        "title": "Buy/sell pressure in the time window: net share of volume bought by takers (10 busiest assets)",
        "rows": f("none:base:nk"),
        "cols": f("usr:Calculation_net_pressure:qk"),
        "mark": "Bar",
        "encodings": [("color", "usr:Calculation_net_pressure:qk"), ("tooltip", "usr:Calculation_buy_share:qk"),
                      ("tooltip", "sum:Calculation_notional_m:qk")],
        "filters": [member_filter("none:Calculation_in_window:nk", "true", context=True),
                    top_filter("none:base:nk", 10, "SUM([Calculation_notional_m])")],
        "sorts": [sort("none:base:nk", "sum:Calculation_notional_m:qk")],
    },
    {
        "name": "Market trend",
        "title": "Market trend: how many assets closed each minute up, down or flat",
        "rows": f("ctd:base:qk"),
        "cols": f("tmn:window_start:qk"),
        "mark": "Bar",
        "encodings": [("color", "none:price_trend:nk")],
        "filters": [member_filter("none:Calculation_in_window:nk", "true"),
                    member_filter("none:is_final:ok", "1")],
        "sorts": [],
    },
]


def refs_of(sheet):
    import re
    text = " ".join([sheet["rows"], sheet["cols"]] + [x for x in sheet["filters"]] + sheet["sorts"])
    refs = set(re.findall(r"\[" + re.escape(DS) + r"\]\.\[([^\]]+)\]", text))
    refs |= {r for _k, r in sheet["encodings"]}
    return sorted(refs)


def worksheet_xml(sheet):
    refs = refs_of(sheet)
    cols = sorted({r.split(":")[1] for r in refs})
    # Calculations that other calculations use need their column declared too.
    deps = set(cols)
    for c in CALCS:
        if c[0].strip("[]") in deps:
            for other in CALCS:
                if other[0] in c[5]:
                    deps.add(other[0].strip("[]"))
            for col in COLUMNS:
                if f"[{col[0]}]" in c[5]:
                    deps.add(col[0])
    params = sorted({p[0] for p in PARAMETERS for c in CALCS if c[0].strip("[]") in deps and p[0] in c[5]})
    ind = "          "
    lines = [f"    <worksheet name={e(sheet['name'])}>",
             "      <layout-options>",
             "        <title>",
             "          <formatted-text>",
             f"            <run>{sheet['title'].replace('<', '&lt;').replace('>', '&gt;')}</run>",
             "          </formatted-text>",
             "        </title>",
             "      </layout-options>",
             "      <table>",
             "        <view>",
             "          <datasources>",
             "            <datasource name='Parameters' />" if params else None,
             f"            <datasource caption='tradewind' name='{DS}' />",
             "          </datasources>"]
    if params:
        lines.append("          <datasource-dependencies datasource='Parameters'>")
        for p in PARAMETERS:
            if p[0] in params:
                lines.append(f"            <column caption={e(p[1])} datatype={e(p[2])} name={e(p[0])} "
                             f"param-domain-type={e(p[4])} role='measure' type='nominal' value={e(p[3])}>")
                lines.append(f"              <calculation class='tableau' formula={e(p[3])} />")
                lines.append("            </column>")
        lines.append("          </datasource-dependencies>")
    lines.append(f"          <datasource-dependencies datasource='{DS}'>")
    for c in sorted(deps):
        lines += ["            " + x for x in col_by_name(c).splitlines()]
    for r in refs:
        lines.append("            " + instance(r))
    lines.append("          </datasource-dependencies>")
    for flt in sheet["filters"]:
        lines += [ind + x for x in flt.splitlines()]
    for s in sheet["sorts"]:
        lines.append(ind + s)
    lines += ["          <aggregation value='true' />",
              "        </view>",
              "        <style />",
              "        <panes>",
              "          <pane selection-relaxation-option='selection-relaxation-allow'>",
              "            <view>",
              "              <breakdown value='auto' />",
              "            </view>",
              f"            <mark class={e(sheet['mark'])} />"]
    if sheet["encodings"]:
        lines.append("            <encodings>")
        for kind, r in sheet["encodings"]:
            lines.append(f"              <{kind} column={e(f(r))} />")
        lines.append("            </encodings>")
    lines += ["          </pane>",
              "        </panes>",
              f"        <rows>{sheet['rows']}</rows>",
              f"        <cols>{sheet['cols']}</cols>",
              "      </table>",
              "    </worksheet>"]
    return "\n".join(x for x in lines if x is not None)


# Dashboard layout in Tableau's 0..100000 zone coordinates: title and controls on top, 2 x 2 sheets.
DASH = "Market overview"
DASH_W, DASH_H = 1400, 900
ZONES = [
    # (id, kind, name-or-param, x, y, w, h)
    (3, "text", None, 0, 0, 60000, 6000),
    (4, "paramctrl", "[Parameters].[Parameter_asset]", 60000, 0, 20000, 6000),
    (5, "paramctrl", "[Parameters].[Parameter_minutes]", 80000, 0, 20000, 6000),
    (6, "sheet", "VWAP and volume", 0, 6000, 60000, 47000),
    (7, "sheet", "Top movers (last closed minute)", 60000, 6000, 40000, 47000),
    (8, "sheet", "Buy/sell pressure", 0, 53000, 50000, 47000),
    (9, "sheet", "Market trend", 50000, 53000, 50000, 47000),
]


def dashboard_xml():
    out = [f"    <dashboard name={e(DASH)}>",
           "      <style />",
           f"      <size maxheight='{DASH_H}' maxwidth='{DASH_W}' minheight='{DASH_H}' minwidth='{DASH_W}' />",
           "      <zones>",
           "        <zone h='100000' id='1' type='layout-basic' w='100000' x='0' y='0'>"]
    for zid, kind, name, x, y, w, h in ZONES:
        geo = f"h='{h}' id='{zid}' w='{w}' x='{x}' y='{y}'"
        if kind == "sheet":
            out.append(f"          <zone {geo} name={e(name)} />")
        elif kind == "paramctrl":
            out.append(f"          <zone {geo} mode='compact' param={e(name)} type='paramctrl' />")
        else:
            out.append(f"          <zone {geo} type='text'>")
            out.append("            <formatted-text>")
            out.append("              <run fontsize='16'>tradewind: crypto market by the minute (times in UTC)</run>")
            out.append("            </formatted-text>")
            out.append("          </zone>")
    out += ["        </zone>", "      </zones>", "    </dashboard>"]
    return "\n".join(out)


def workbook():
    header = [
        "<?xml version='1.0' encoding='utf-8' ?>",
        "<!-- tradewind: Tableau workbook, generated by scripts/gen_tableau.py (edit that, not this file).",
        "     Dashboard 'Market overview': VWAP and notional per minute for a chosen asset (parameter 'Asset'),",
        "     the top movers of the last closed minute, buy/sell pressure per asset, and the market trend",
        "     (assets up/down/flat per minute). Live connection to view v_tableau_asset_minute as the read-only",
        "     user; no password is stored.",
        "     Time zones: the time window filters on minutes_ago, which MariaDB computes from UTC_TIMESTAMP(),",
        "     so it selects the same minutes in every client time zone (Tableau's NOW() and relative-date",
        "     filters would use the client's zone against UTC DATETIMEs). Checked by scripts/check_tableau.py. -->",
        "<workbook original-version='18.1' source-build='2024.1.0 (20241.24.0312.0830)' source-platform='linux' "
        "version='18.1' xmlns:user='http://www.tableausoftware.com/xml/user'>",
        "  <preferences>",
        "    <preference name='ui.encoding.shelf.height' value='24' />",
        "  </preferences>",
        "  <datasources>",
        parameters_xml("    "),
        f"    <datasource caption='tradewind' inline='true' name='{DS}' version='18.1'>",
        datasource_body("      "),
        "    </datasource>",
        "  </datasources>",
        "  <worksheets>",
        *[worksheet_xml(s) for s in SHEETS],
        "  </worksheets>",
        "  <dashboards>",
        dashboard_xml(),
        "  </dashboards>",
        "  <windows source-height='30'>",
        f"    <window class='dashboard' maximized='true' name={e(DASH)} />",
        *[f"    <window class='worksheet' name={e(s['name'])} />" for s in SHEETS],
        "  </windows>",
        "</workbook>",
    ]
    return "\n".join(header) + "\n"


def datasource():
    return "\n".join([
        "<?xml version='1.0' encoding='utf-8' ?>",
        "<!-- tradewind: Tableau data source, generated by scripts/gen_tableau.py. Live connection to the `tradewind`",
        "     database, view v_tableau_asset_minute (one row per asset and UTC minute, final and provisional), as the",
        "     read-only user; the password is never stored. Calculated fields: VWAP (USD), Notional ($M), Buy share,",
        "     Net buy pressure, Size of move %. Filter time with 'Minutes ago' (computed by the database, right in",
        "     every client time zone), not with NOW() against the UTC DATETIMEs. -->",
        "<datasource formatted-name='tradewind' inline='true' source-platform='linux' version='18.1' "
        "xmlns:user='http://www.tableausoftware.com/xml/user'>",
        datasource_body("  ", with_parameters=False),
        "  <layout dim-ordering='alphabetic' measure-ordering='alphabetic' show-structure='true' />",
        "</datasource>",
    ]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed files are not up to date")
    args = ap.parse_args()
    outputs = {os.path.join(ROOT, "tableau", "tradewind.twb"): workbook(),
               os.path.join(ROOT, "tableau", "tradewind.tds"): datasource()}
    stale = []
    for path, text in outputs.items():
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text:
            stale.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
    if args.check and stale:
        print("out of date (run python3 scripts/gen_tableau.py): " + ", ".join(stale))
        return 1
    print(("checked " if args.check else "wrote ") + ", ".join(os.path.relpath(p, ROOT) for p in outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
