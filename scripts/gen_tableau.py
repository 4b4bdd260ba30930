#!/usr/bin/env python3
"""Generate tableau/tradewind.tds (data source) and tableau/tradewind.twb (workbook with a dashboard).

The workbook is dashboard-as-code, like grafana/tradewind.json: edit this script, run it, commit both
outputs. scripts/check_tableau.py checks the generated XML independently (fields resolve against the
DDL, every worksheet's query runs on MariaDB as the read-only user, the dashboard lays out every sheet).

    python3 scripts/gen_tableau.py            # rewrite tableau/tradewind.tds and tableau/tradewind.twb
    python3 scripts/gen_tableau.py --check    # exit 1 if the committed files differ from the output

Three data sources, one per grain: v_tableau_asset_minute (schemas/mysql/010_tableau_views.sql) for the
last minutes and hours, and v_tableau_asset_hour / v_tableau_asset_day (011_rollup_views.sql, over the
asset_1h and asset_1d rollups) for the long-range sheets, so a month of history reads hundreds of rows
per asset, not tens of thousands. Each also has its own stand-alone .tds.

Time zones: each view computes the age of its rows in the database from UTC_TIMESTAMP() (`minutes_ago`,
`hours_ago`, `days_ago`). The "time window" filters compare that integer with a parameter, so they select
the same windows whatever the client's time zone; no sheet uses Tableau's NOW() or a relative-date filter
on the UTC DATETIME columns (those use the client's clock and zone). Times on axes are labelled UTC.
"""
import argparse
import os
import sys
from xml.sax.saxutils import quoteattr

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
READONLY_USER = "tableau"

# View columns of the minute view: (name, caption, datatype, role, type, remote-type, default aggregation).
MINUTE_COLUMNS = [
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
    ("[Parameter_days]", "Days shown (hourly and daily sheets)", "integer", "30", "range", (1, 400, 1)),
]

# Calculated fields of the minute data source: (name, caption, datatype, role, type, formula, format).
MINUTE_CALCS = [
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


def grain_columns(unit):
    """The hour or day view's columns: the minute view's, captioned per `unit`, with its own ages."""
    cols = []
    for name, caption, *rest in MINUTE_COLUMNS:
        if name.startswith("minutes_") or name == "is_last_closed":
            continue
        cols.append((name, caption.replace("Minute", unit.capitalize()).replace("minute", unit), *rest))
    return cols + [
        (f"{unit}s_ago", f"{unit.capitalize()}s ago (computed in the database, UTC)", "integer", "dimension",
         "ordinal", 20, "Sum"),
        (f"{unit}s_before_latest", f"{unit.capitalize()}s before the newest {unit}", "integer", "dimension",
         "ordinal", 20, "Sum"),
        ("is_last_closed", f"Is the last closed {unit}", "integer", "dimension", "ordinal", 16, "Count"),
    ]


def grain_calcs(in_window):
    """The minute data source's calculations, with the time-window filter `in_window`."""
    return [c if c[0] != "[Calculation_in_window]" else c[:5] + (in_window, None) for c in MINUTE_CALCS]


# Data sources, one per grain: name, caption, view, columns, calculations, .tds file, description.
DATASOURCES = {
    "minute": {
        "name": "federated.tradewind", "caption": "tradewind", "view": "v_tableau_asset_minute",
        "sql": "010_tableau_views.sql", "columns": MINUTE_COLUMNS, "calcs": MINUTE_CALCS,
        "tds": "tradewind.tds", "rows": "one row per asset and UTC minute", "age": "minutes_ago"},
    "hour": {
        "name": "federated.tradewind_hour", "caption": "tradewind (hourly)", "view": "v_tableau_asset_hour",
        "sql": "011_rollup_views.sql", "columns": grain_columns("hour"),
        "calcs": grain_calcs("[hours_ago] < [Parameters].[Parameter_days] * 24"),
        "tds": "tradewind_hour.tds", "rows": "one row per asset and UTC hour, from the asset_1h rollup",
        "age": "hours_ago"},
    "day": {
        "name": "federated.tradewind_day", "caption": "tradewind (daily)", "view": "v_tableau_asset_day",
        "sql": "011_rollup_views.sql", "columns": grain_columns("day"),
        "calcs": grain_calcs("[days_ago] < [Parameters].[Parameter_days]"),
        "tds": "tradewind_day.tds", "rows": "one row per asset and UTC day, from the asset_1d rollup",
        "age": "days_ago"},
}
DS = DATASOURCES["minute"]["name"]
HOUR_DS = DATASOURCES["hour"]["name"]
DAY_DS = DATASOURCES["day"]["name"]


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


def connection_xml(src, indent):
    i = indent
    view = src["view"]
    recs = []
    for n, (name, _cap, datatype, _role, _typ, remote, agg) in enumerate(src["columns"], 1):
        recs.append(
            f"{i}    <metadata-record class='column'>\n"
            f"{i}      <remote-name>{name}</remote-name>\n"
            f"{i}      <remote-type>{remote}</remote-type>\n"
            f"{i}      <local-name>[{name}]</local-name>\n"
            f"{i}      <parent-name>[{view}]</parent-name>\n"
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
        f"{i}  <!-- A view, not a table: the tables can evolve behind it (schemas/mysql/{src['sql']}). -->",
        f"{i}  <relation connection='mysql.tradewind' name='{view}' table='[{view}]' type='table' />",
        f"{i}  <metadata-records>",
        *recs,
        f"{i}  </metadata-records>",
        f"{i}</connection>",
    ])


def datasource_body(src, indent, with_parameters=True):
    cols = [column_xml(n, cap, dt, role, typ, indent) for (n, cap, dt, role, typ, _r, _a) in src["columns"]]
    # A stand-alone data source cannot hold parameters: calculations on them live in the workbook only.
    calcs = [calc_xml(c, indent) for c in src["calcs"] if with_parameters or "[Parameters]." not in c[5]]
    return "\n".join([connection_xml(src, indent), *cols, *calcs])


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


def col_by_name(src, name):
    for c in src["columns"]:
        if c[0] == name:
            return column_xml(c[0], c[1], c[2], c[3], c[4], "")
    for c in src["calcs"]:
        if c[0] == "[" + name + "]":
            return calc_xml(c, "")
    raise KeyError(name)


DERIV = {"none": "None", "sum": "Sum", "avg": "Avg", "max": "Max", "min": "Min", "ctd": "CountD", "usr": "User",
         "tmn": "Minute-Trunc", "thr": "Hour-Trunc", "tdy": "Day-Trunc"}


def instance(ref):
    """`none:base:nk` -> column-instance XML."""
    prefix, col, suffix = ref.split(":")
    typ = {"nk": "nominal", "ok": "ordinal", "qk": "quantitative"}[suffix]
    return (f"<column-instance column={e('[' + col + ']')} derivation={e(DERIV[prefix])} name={e('[' + ref + ']')} "
            f"pivot='key' type={e(typ)} />")


def f(ref, ds=DS):
    return f"[{ds}].[{ref}]"


def member_filter(ref, member, context=False, ds=DS):
    """A filter keeping one member; a context filter applies before top-N filters (Tableau's order)."""
    ctx = " context='true'" if context else ""
    return (f"<filter class='categorical'{ctx} column={e(f(ref, ds))}>\n"
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
    # Long ranges read the rollups: a month is 720 hourly rows per asset instead of 43,200 minutes.
    {
        "name": "VWAP and volume by hour",
        "ds": "hour",
        "title": "<[Parameters].[Parameter_asset]>, last <[Parameters].[Parameter_days]> days: hourly VWAP (line) "
                 "and notional traded per hour ($M, bars)",
        "rows": f"({f('usr:Calculation_vwap:qk', HOUR_DS)} + {f('sum:Calculation_notional_m:qk', HOUR_DS)})",
        "cols": f("thr:window_start:qk", HOUR_DS),
        "mark": "Line",
        "encodings": [("tooltip", "sum:trades:qk")],
        "filters": [member_filter("none:Calculation_selected:nk", "true", ds=HOUR_DS),
                    member_filter("none:Calculation_in_window:nk", "true", ds=HOUR_DS)],
        "sorts": [],
    },
    {
        "name": "Daily VWAP, high and low",
        "ds": "day",
        "title": "<[Parameters].[Parameter_asset]>, last <[Parameters].[Parameter_days]> days: daily VWAP, high "
                 "and low (USD)",
        "rows": f"({f('usr:Calculation_vwap:qk', DAY_DS)} + {f('max:high_usd:qk', DAY_DS)} + "
                f"{f('min:low_usd:qk', DAY_DS)})",
        "cols": f("tdy:window_start:qk", DAY_DS),
        "mark": "Line",
        "encodings": [("tooltip", "sum:Calculation_notional_m:qk"), ("tooltip", "sum:trades:qk")],
        "filters": [member_filter("none:Calculation_selected:nk", "true", ds=DAY_DS),
                    member_filter("none:Calculation_in_window:nk", "true", ds=DAY_DS)],
        "sorts": [],
    },
]


def source_of(sheet):
    return DATASOURCES[sheet.get("ds", "minute")]


def refs_of(sheet):
    import re
    text = " ".join([sheet["rows"], sheet["cols"]] + [x for x in sheet["filters"]] + sheet["sorts"])
    refs = set(re.findall(r"\[" + re.escape(source_of(sheet)["name"]) + r"\]\.\[([^\]]+)\]", text))
    refs |= {r for _k, r in sheet["encodings"]}
    return sorted(refs)


def worksheet_xml(sheet):
    src = source_of(sheet)
    ds = src["name"]
    calcs = src["calcs"]
    refs = refs_of(sheet)
    cols = sorted({r.split(":")[1] for r in refs})
    # Calculations that other calculations use need their column declared too.
    deps = set(cols)
    for c in calcs:
        if c[0].strip("[]") in deps:
            for other in calcs:
                if other[0] in c[5]:
                    deps.add(other[0].strip("[]"))
            for col in src["columns"]:
                if f"[{col[0]}]" in c[5]:
                    deps.add(col[0])
    params = sorted({p[0] for p in PARAMETERS for c in calcs if c[0].strip("[]") in deps and p[0] in c[5]})
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
             f"            <datasource caption={e(src['caption'])} name='{ds}' />",
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
    lines.append(f"          <datasource-dependencies datasource='{ds}'>")
    for c in sorted(deps):
        lines += ["            " + x for x in col_by_name(src, c).splitlines()]
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
            lines.append(f"              <{kind} column={e(f(r, ds))} />")
        lines.append("            </encodings>")
    lines += ["          </pane>",
              "        </panes>",
              f"        <rows>{sheet['rows']}</rows>",
              f"        <cols>{sheet['cols']}</cols>",
              "      </table>",
              "    </worksheet>"]
    return "\n".join(x for x in lines if x is not None)


# Dashboard layout in Tableau's 0..100000 zone coordinates: title and controls on top, 3 rows of 2 sheets
# (the last minutes, then the long range from the hourly and daily rollups).
DASH = "Market overview"
DASH_W, DASH_H = 1400, 1250
ZONES = [
    # (id, kind, name-or-param, x, y, w, h)
    (3, "text", None, 0, 0, 52000, 5000),
    (4, "paramctrl", "[Parameters].[Parameter_asset]", 52000, 0, 16000, 5000),
    (5, "paramctrl", "[Parameters].[Parameter_minutes]", 68000, 0, 16000, 5000),
    (10, "paramctrl", "[Parameters].[Parameter_days]", 84000, 0, 16000, 5000),
    (6, "sheet", "VWAP and volume", 0, 5000, 60000, 32000),
    (7, "sheet", "Top movers (last closed minute)", 60000, 5000, 40000, 32000),
    (8, "sheet", "Buy/sell pressure", 0, 37000, 50000, 31500),
    (9, "sheet", "Market trend", 50000, 37000, 50000, 31500),
    (11, "sheet", "VWAP and volume by hour", 0, 68500, 50000, 31500),
    (12, "sheet", "Daily VWAP, high and low", 50000, 68500, 50000, 31500),
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
            out.append("              <run fontsize='16'>tradewind: crypto market by the minute, hour and day "
                       "(times in UTC)</run>")
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
        "     (assets up/down/flat per minute); over the last days (parameter 'Days shown'), the chosen asset's",
        "     hourly VWAP and notional and its daily VWAP, high and low. Live connections to the views",
        "     v_tableau_asset_minute, v_tableau_asset_hour and v_tableau_asset_day (the asset_1h and asset_1d",
        "     rollups) as the read-only user; no password is stored.",
        "     Time zones: the time windows filter on minutes_ago, hours_ago and days_ago, which MariaDB computes",
        "     from UTC_TIMESTAMP(), so they select the same windows in every client time zone (Tableau's NOW() and",
        "     relative-date filters would use the client's zone against UTC DATETIMEs). Checked by",
        "     scripts/check_tableau.py. -->",
        "<workbook original-version='18.1' source-build='2024.1.0 (20241.24.0312.0830)' source-platform='linux' "
        "version='18.1' xmlns:user='http://www.tableausoftware.com/xml/user'>",
        "  <preferences>",
        "    <preference name='ui.encoding.shelf.height' value='24' />",
        "  </preferences>",
        "  <datasources>",
        parameters_xml("    "),
        *[x for src in DATASOURCES.values() for x in (
            f"    <datasource caption={e(src['caption'])} inline='true' name='{src['name']}' version='18.1'>",
            datasource_body(src, "      "),
            "    </datasource>")],
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


def datasource(src):
    age = next(c[1] for c in src["columns"] if c[0] == src["age"]).split(" (")[0]
    return "\n".join([
        "<?xml version='1.0' encoding='utf-8' ?>",
        "<!-- tradewind: Tableau data source, generated by scripts/gen_tableau.py. Live connection to the `tradewind`",
        f"     database, view {src['view']} ({src['rows']}, final and provisional), as the",
        "     read-only user; the password is never stored. Calculated fields: VWAP (USD), Notional ($M), Buy share,",
        f"     Net buy pressure, Size of move %. Filter time with '{age}' (computed by the database, right in",
        "     every client time zone), not with NOW() against the UTC DATETIMEs. -->",
        f"<datasource formatted-name={e(src['caption'])} inline='true' source-platform='linux' version='18.1' "
        "xmlns:user='http://www.tableausoftware.com/xml/user'>",
        datasource_body(src, "  ", with_parameters=False),
        "  <layout dim-ordering='alphabetic' measure-ordering='alphabetic' show-structure='true' />",
        "</datasource>",
    ]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed files are not up to date")
    args = ap.parse_args()
    outputs = {os.path.join(ROOT, "tableau", "tradewind.twb"): workbook()}
    for src in DATASOURCES.values():
        outputs[os.path.join(ROOT, "tableau", src["tds"])] = datasource(src)
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
